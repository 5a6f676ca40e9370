"""An independent S3 client (boto3) for the end-to-end tests of backup destinations: it
makes buckets and reads back what Cairn wrote, so the tests never judge Cairn's objects
with Cairn's own code.

Usage: python3 s3.py ENDPOINT COMMAND ARGS...
  mkbucket BUCKET           create a bucket
  get BUCKET KEY FILE       download an object into FILE
  put BUCKET KEY FILE       upload FILE as an object
  list BUCKET [PREFIX]      print "key size" per object, then "uploads N" (unfinished
                            multipart uploads)
"""

import sys

try:
    import boto3
except ImportError as missing:
    sys.exit(f"{missing}: the destination tests need boto3 (.ci/run installs it: pip install boto3 'moto[server]')")

ENDPOINT, COMMAND, ARGS = sys.argv[1], sys.argv[2], sys.argv[3:]
s3 = boto3.client(
    "s3",
    endpoint_url=ENDPOINT,
    aws_access_key_id="testing",
    aws_secret_access_key="testing",
    region_name="us-east-1",
)

if COMMAND == "mkbucket":
    s3.create_bucket(Bucket=ARGS[0])
elif COMMAND == "get":
    s3.download_file(ARGS[0], ARGS[1], ARGS[2])
elif COMMAND == "put":
    s3.upload_file(ARGS[2], ARGS[0], ARGS[1])
elif COMMAND == "list":
    prefix = ARGS[1] if len(ARGS) > 1 else ""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=ARGS[0], Prefix=prefix):
        for item in page.get("Contents", []):
            print(item["Key"], item["Size"])
    uploads = s3.list_multipart_uploads(Bucket=ARGS[0]).get("Uploads", [])
    print("uploads", len(uploads))
else:
    sys.exit(f"unknown command {COMMAND}")
