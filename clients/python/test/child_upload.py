"""Run by the kill -9 test (and the benchmark): uploads one file with the sync
client, printing a JSON line per progress report and one at the end.
Arguments: ENDPOINT FILE CHECKSUM PART_SIZE CONCURRENCY; the credential in
UPLOAD_BROKER_KEY (never on the command line)."""

import json
import os
import sys

from upload_broker import Progress, UploadBroker


def main() -> None:
    endpoint, path, checksum, part_size, concurrency = sys.argv[1:6]

    def report(p: Progress) -> None:
        print(json.dumps({"type": "progress", "parts": p.uploaded_parts, "percent": p.percent}), flush=True)

    with UploadBroker(endpoint, os.environ["UPLOAD_BROKER_KEY"]) as b:
        r = b.upload(
            path,
            checksum=None if checksum == "none" else checksum,
            part_size=int(part_size),
            concurrency=int(concurrency),
            on_progress=report,
        )
    print(json.dumps({"type": "done", "key": r.key, "size": r.size, "status": r.status}), flush=True)


if __name__ == "__main__":
    main()
