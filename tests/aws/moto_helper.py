#!/usr/bin/env python3
"""boto3/botocore side of kiln's aws tests (run with the pyenv python3 that has moto + boto3).

  setup ENDPOINT             create an IAM user, an allow-all user policy and an access key
                             (moto's first INITIAL_NO_AUTH_ACTION_COUNT=3 requests); prints
                             {"key": ..., "secret": ...}
  create-role ENDPOINT KEY SECRET NAME TRUST(sagemaker|ec2) POLICY(s3|none)
                             a role for the IAM checks, signed with the new key; prints its ARN
  s3-get ENDPOINT KEY SECRET BUCKET OBJKEY OUTFILE
                             read an object back with boto3
  s3-put ENDPOINT KEY SECRET BUCKET OBJKEY INFILE
  bad-secret ENDPOINT KEY    a ListBuckets signed with a wrong secret: prints the error code
  endpoint-results ENDPOINT BODYFILE
                             queue InvokeEndpoint's canned answer in moto (its moto-api)
  check-metrics FILE         FILE is {"definitions": [{"Name", "Regex"}], "lines": [...]}: prints
                             {name: [first group of each matching line]} (Python's re)
  check-shapes FILE          FILE is {"Operation": request body, ...}: check each against
                             botocore's SageMaker service model (required members, types)
  ecr-put-image ENDPOINT KEY SECRET REPO TAG MEDIATYPE
                             PutImage of a small manifest of that media type; prints its digest
"""
import json
import sys

import boto3
import botocore
from botocore.config import Config

REGION = "us-east-1"


def client(service, endpoint, key="testing", secret="testing"):
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint,
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))


def setup(endpoint):
    iam = client("iam", endpoint)
    iam.create_user(UserName="kiln-test")
    iam.put_user_policy(UserName="kiln-test", PolicyName="allow-all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    k = iam.create_access_key(UserName="kiln-test")["AccessKey"]
    print(json.dumps({"key": k["AccessKeyId"], "secret": k["SecretAccessKey"]}))


def create_role(endpoint, key, secret, name, trust, policy):
    iam = client("iam", endpoint, key, secret)
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {
        "Service": "sagemaker.amazonaws.com" if trust == "sagemaker" else "ec2.amazonaws.com"},
        "Action": "sts:AssumeRole"}]}
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(doc))["Role"]["Arn"]
    if policy == "s3":
        iam.put_role_policy(RoleName=name, PolicyName="s3-access", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": "*"}]}))
        pol = iam.create_policy(PolicyName=name + "-sm", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sagemaker:*", "Resource": "*"}]}))
        iam.attach_role_policy(RoleName=name, PolicyArn=pol["Policy"]["Arn"])
    print(arn)


def bad_secret(endpoint, key):
    try:
        client("s3", endpoint, key, "definitely-not-the-secret").list_buckets()
        print("ACCEPTED")
    except botocore.exceptions.ClientError as e:
        print(e.response["Error"]["Code"])


def endpoint_results(endpoint, body_file):
    import urllib.request
    body = open(body_file, "rb").read().decode("latin-1")
    req = urllib.request.Request(endpoint + "/moto-api/static/sagemaker/endpoint-results", method="POST",
                                 data=json.dumps({"results": [{"Body": body, "ContentType": "application/x-npy"}]}).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()


def check_value(shape_name, shapes, value, path, errors):
    shape = shapes[shape_name]
    t = shape["type"]
    if t == "structure":
        if not isinstance(value, dict):
            errors.append(f"{path}: expected an object ({shape_name}), found {type(value).__name__}")
            return
        for req in shape.get("required", []):
            if req not in value:
                errors.append(f"{path}: required member {req} missing ({shape_name})")
        for k, v in value.items():
            if k not in shape["members"]:
                errors.append(f"{path}.{k}: not a member of {shape_name}")
                continue
            check_value(shape["members"][k]["shape"], shapes, v, f"{path}.{k}", errors)
    elif t == "list":
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list ({shape_name})")
            return
        if "min" in shape and len(value) < shape["min"]:
            errors.append(f"{path}: at least {shape['min']} items expected")
        for i, v in enumerate(value):
            check_value(shape["member"]["shape"], shapes, v, f"{path}[{i}]", errors)
    elif t == "map":
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a map ({shape_name})")
            return
        for k, v in value.items():
            check_value(shape["key"]["shape"], shapes, k, f"{path}<key>", errors)
            check_value(shape["value"]["shape"], shapes, v, f"{path}.{k}", errors)
    elif t == "string":
        if not isinstance(value, str):
            errors.append(f"{path}: expected a string ({shape_name}), found {type(value).__name__} {value!r}")
            return
        if "enum" in shape and value not in shape["enum"]:
            errors.append(f"{path}: {value!r} not one of {shape_name}'s values")
        if "min" in shape and len(value) < shape["min"]:
            errors.append(f"{path}: shorter than {shape['min']}")
        if "max" in shape and len(value) > shape["max"]:
            errors.append(f"{path}: longer than {shape['max']}")
    elif t in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"{path}: expected an integer ({shape_name}), found {value!r}")
        elif ("min" in shape and value < shape["min"]) or ("max" in shape and value > shape["max"]):
            errors.append(f"{path}: {value} outside [{shape.get('min')}, {shape.get('max')}]")
    elif t in ("float", "double"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            errors.append(f"{path}: expected a number ({shape_name}), found {value!r}")
    elif t == "boolean":
        if not isinstance(value, bool):
            errors.append(f"{path}: expected a boolean ({shape_name}), found {value!r}")


def check_shapes(path):
    import botocore.loaders
    model = botocore.loaders.Loader().load_service_model("sagemaker", "service-2")
    shapes = model["shapes"]
    bodies = json.load(open(path))
    errors = []
    for op, body in bodies.items():
        if op not in model["operations"]:
            errors.append(f"{op}: not a SageMaker operation")
            continue
        check_value(model["operations"][op]["input"]["shape"], shapes, body, op, errors)
    print(json.dumps({"checked": sorted(bodies), "errors": errors}))
    return 1 if errors else 0


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "setup":
        setup(*args)
    elif cmd == "create-role":
        create_role(*args)
    elif cmd == "s3-get":
        ep, key, secret, bucket, objkey, out = args
        client("s3", ep, key, secret).download_file(bucket, objkey, out)
    elif cmd == "s3-put":
        ep, key, secret, bucket, objkey, infile = args
        client("s3", ep, key, secret).upload_file(infile, bucket, objkey)
    elif cmd == "bad-secret":
        bad_secret(*args)
    elif cmd == "endpoint-results":
        endpoint_results(*args)
    elif cmd == "check-metrics":
        import re
        spec = json.load(open(args[0]))
        print(json.dumps({d["Name"]: [m.group(1) for line in spec["lines"]
                                      for m in [re.search(d["Regex"], line)] if m]
                          for d in spec["definitions"]}))
    elif cmd == "check-shapes":
        return check_shapes(*args)
    elif cmd == "ecr-put-image":
        ep, key, secret, repo, tag, media_type = args
        manifest = json.dumps({"schemaVersion": 2, "mediaType": media_type,
                               "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                          "size": 2, "digest": "sha256:" + "4" * 64},
                               "layers": []})
        r = client("ecr", ep, key, secret).put_image(repositoryName=repo, imageTag=tag,
                                                      imageManifest=manifest, imageManifestMediaType=media_type)
        print(r["image"]["imageId"]["imageDigest"])
    else:
        print("unknown command " + cmd, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
