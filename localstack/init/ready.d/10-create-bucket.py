"""Creates the broker's bucket and its CORS rule in LocalStack.

One script for both ways of running LocalStack:
- docker-compose mounts this folder as /etc/localstack/init/ready.d, and LocalStack
  runs it once S3 is ready;
- scripts/ run it on the host with the LocalStack venv's Python.

Environment: S3_BUCKET (default "uploads"), BROKER_CORS_ORIGINS (comma-separated,
default "*"), AWS_ENDPOINT_URL (default http://localhost:4566), and
S3_BUCKET_VERSIONING=1 to turn versioning on.
"""

import os

import boto3

endpoint = os.environ.get("AWS_ENDPOINT_URL") or "http://localhost:4566"
bucket = os.environ.get("S3_BUCKET") or "uploads"
origins = [o.strip() for o in (os.environ.get("BROKER_CORS_ORIGINS") or "*").split(",") if o.strip()]

s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    region_name=os.environ.get("S3_REGION") or "us-east-1",
    aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID") or "test",
    aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or "test",
)

existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
if bucket not in existing:
    s3.create_bucket(Bucket=bucket)

# Browsers PUT parts straight to the bucket and must be able to read each part's
# ETag, which they cannot without ExposeHeaders.
s3.put_bucket_cors(
    Bucket=bucket,
    CORSConfiguration={
        "CORSRules": [
            {
                "AllowedOrigins": origins,
                "AllowedMethods": ["PUT", "POST", "GET", "HEAD"],
                "AllowedHeaders": ["*"],
                "ExposeHeaders": ["ETag"],
                "MaxAgeSeconds": 3600,
            }
        ]
    },
)

if os.environ.get("S3_BUCKET_VERSIONING") == "1":
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

print(f"bucket {bucket} ready at {endpoint} (CORS origins: {', '.join(origins)})")
