"""LocalStack 4.13.1 loses a stored part when a later re-upload of the same part
is refused, yet still lists it: the completed object is one part short.

    AWS_ENDPOINT_URL=http://127.0.0.1:4566 ~/.cache/upload-broker/localstack-venv/bin/python \
        scripts/repro/localstack-refused-reupload.py

Parts 1 and 2 (5 MiB each) are stored; part 1 is sent again with a wrong
`x-amz-checksum-crc32` and refused (400 BadDigest). LocalStack's `upload_part`
(localstack/services/s3/provider.py) writes the new body into the part's file,
and on the refusal removes that file (`remove_part`) while the metadata of the
earlier, accepted part stays in `s3_multipart.parts`: ListParts still lists
part 1 with its old ETag and size, CompleteMultipartUpload accepts it, and the
object is assembled with an empty part 1. AWS keeps the earlier part when a
re-upload fails. The broker compares the object's size (HeadObject) with the
parts after every completion and refuses such an object
(docs/s3-compatibility.md). Exits 1 when the object is short.
"""

import os
import sys
import uuid

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

s3 = boto3.client(
    "s3",
    endpoint_url=os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
    region_name="us-east-1",
    aws_access_key_id="test",
    aws_secret_access_key="test",
    config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
)
bucket = "repro-" + uuid.uuid4().hex[:8]
s3.create_bucket(Bucket=bucket)
key, part = "short.bin", 5 * 1024 * 1024
upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
for n in (1, 2):
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=n, Body=bytes([n]) * part)
try:
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1,
                   Body=b"y" * part, ChecksumCRC32="AAAAAA==")
    print("the re-upload with a wrong checksum was accepted")
except ClientError as e:
    print("the re-upload with a wrong checksum was refused:", e.response["Error"]["Code"])
listed = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload)["Parts"]
print("ListParts:", [(p["PartNumber"], p["Size"]) for p in listed])
s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={
    "Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in listed]})
size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
want = sum(p["Size"] for p in listed)
print(f"the object has {size} bytes; the listed parts {want}")
sys.exit(1 if size != want else 0)
