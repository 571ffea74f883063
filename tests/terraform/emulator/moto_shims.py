"""The few things moto 5.2.5 lacks to serve this estate to the real Terraform provider.

Installed into the moto *server* process only (``server.py``), never into product code
or the test process. Each shim names the moto behaviour it stands in for; anything not
listed here is moto's own. Deliberately left out of the emulator (moto implements
neither, so the emulator apply drops them through its override and they stay
plan-tested in ``modules/ecr/tests``): ECR pull-through cache rules and ECR repository
creation templates. AWS managed IAM policies are moto's own, loaded by the server's
environment (``MOTO_IAM_LOAD_MANAGED_POLICIES=true``), not by a shim.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

INSTALLED: list[str] = []


# ----------------------------------------------------------------------------- FSx


def _fsx() -> None:
    """moto's FSx has no ``Lifecycle`` in DescribeFileSystems (the provider waits for
    ``AVAILABLE`` forever), returns an empty list instead of ``FileSystemNotFound`` for an
    unknown id, and implements none of the data-repository-association APIs."""
    from moto.fsx import models, responses
    from moto.fsx.models import FileSystem, fsx_backends

    original_to_dict = FileSystem.to_dict

    def to_dict(self: FileSystem) -> dict[str, Any]:
        d = original_to_dict(self)
        d.setdefault("Lifecycle", "AVAILABLE")
        d.setdefault("CreationTime", getattr(self, "_shim_created", time.time()))
        d.setdefault("OwnerId", self.resource_arn.split(":")[4])
        d.setdefault("NetworkInterfaceIds", [])
        d.setdefault("VpcId", "")
        return d

    FileSystem.to_dict = to_dict

    from moto.core.exceptions import JsonRESTError

    def _error(code: str, message: str) -> Any:
        raise JsonRESTError(code, message)

    def backend(self: Any) -> Any:
        return fsx_backends[self.current_account][self.region]

    def associations(self: Any) -> dict[str, dict[str, Any]]:
        b = backend(self)
        if not hasattr(b, "_shim_dras"):
            b._shim_dras = {}
        return b._shim_dras

    original_describe = responses.FSxResponse.describe_file_systems

    def describe_file_systems(self: Any) -> Any:
        ids = json.loads(self.body or "{}").get("FileSystemIds") or []
        missing = [i for i in ids if i not in backend(self).file_systems]
        if missing:
            return _error("FileSystemNotFound", f"File system '{missing[0]}' does not exist.")
        return original_describe(self)

    def create_data_repository_association(self: Any) -> str:
        p = json.loads(self.body)
        fs_id = p["FileSystemId"]
        fs = backend(self).file_systems.get(fs_id)
        if fs is None:
            return _error("FileSystemNotFound", f"File system '{fs_id}' does not exist.")
        assoc_id = f"dra-{uuid.uuid4().hex[:17]}"
        dra = {
            "AssociationId": assoc_id,
            "ResourceARN": fs.resource_arn.replace(f"file-system/{fs_id}", f"association/{fs_id}/{assoc_id}"),
            "FileSystemId": fs_id,
            "Lifecycle": "AVAILABLE",
            "FileSystemPath": p.get("FileSystemPath", "/"),
            "DataRepositoryPath": p["DataRepositoryPath"],
            "BatchImportMetaDataOnCreate": p.get("BatchImportMetaDataOnCreate", False),
            "ImportedFileChunkSize": p.get("ImportedFileChunkSize", 1024),
            "S3": p.get("S3", {}),
            "Tags": p.get("Tags", []),
            "CreationTime": time.time(),
        }
        associations(self)[assoc_id] = dra
        return json.dumps({"Association": dra})

    def describe_data_repository_associations(self: Any) -> str:
        p = json.loads(self.body or "{}")
        ids = p.get("AssociationIds") or []
        found = associations(self)
        missing = [i for i in ids if i not in found]
        if missing:
            return _error("DataRepositoryAssociationNotFound", f"Association '{missing[0]}' does not exist.")
        items = [found[i] for i in ids] if ids else list(found.values())
        for f in p.get("Filters") or []:
            if f.get("Name") == "file-system-id":
                items = [d for d in items if d["FileSystemId"] in f.get("Values", [])]
        return json.dumps({"Associations": items})

    def update_data_repository_association(self: Any) -> Any:
        p = json.loads(self.body)
        dra = associations(self).get(p["AssociationId"])
        if dra is None:
            return _error("DataRepositoryAssociationNotFound", f"Association '{p['AssociationId']}' does not exist.")
        for key in ("ImportedFileChunkSize", "S3"):
            if key in p:
                dra[key] = p[key]
        return json.dumps({"Association": dra})

    def delete_data_repository_association(self: Any) -> Any:
        p = json.loads(self.body)
        dra = associations(self).pop(p["AssociationId"], None)
        if dra is None:
            return _error("DataRepositoryAssociationNotFound", f"Association '{p['AssociationId']}' does not exist.")
        return json.dumps({"AssociationId": p["AssociationId"], "Lifecycle": "DELETING",
                           "DeleteDataInFileSystem": p.get("DeleteDataInFileSystem", False)})

    for fn in (describe_file_systems, create_data_repository_association, describe_data_repository_associations,
               update_data_repository_association, delete_data_repository_association):
        setattr(responses.FSxResponse, fn.__name__, fn)
    assert models  # imported for the backend registry
    INSTALLED.append("fsx: Lifecycle, FileSystemNotFound, data repository associations")


# -------------------------------------------------------------------- Step Functions


def _stepfunctions() -> None:
    """moto implements neither ``ValidateStateMachineDefinition`` (the provider validates
    every definition before CreateStateMachine) nor ``ListStateMachineVersions`` (read
    back after create). The definition is checked for JSON only here; the ASL itself is
    validated by statelint and asl-validator in the static checks."""
    from moto.stepfunctions.responses import StepFunctionResponse

    def validate_state_machine_definition(self: Any) -> str:
        p = json.loads(self.body)
        try:
            json.loads(p["definition"])
        except (ValueError, KeyError) as exc:
            return json.dumps({"result": "FAIL", "diagnostics": [
                {"severity": "ERROR", "code": "INVALID_JSON_DESCRIPTION", "message": str(exc)}], "truncated": False})
        return json.dumps({"result": "OK", "diagnostics": [], "truncated": False})

    def list_state_machine_versions(self: Any) -> str:
        return json.dumps({"stateMachineVersions": []})

    StepFunctionResponse.validate_state_machine_definition = validate_state_machine_definition
    StepFunctionResponse.list_state_machine_versions = list_state_machine_versions
    INSTALLED.append("stepfunctions: ValidateStateMachineDefinition, ListStateMachineVersions")


# ------------------------------------------------------------------------------ S3


def _s3() -> None:
    """Two bucket-policy gaps. (1) PutBucketLogging's check of the target bucket's policy
    calls ``Principal.get("Service")`` and fails with HTTP 500 on ``"Principal": "*"``
    (our DenyInsecureTransport statement). (2) moto evaluates bucket policies without their
    ``Condition`` blocks, so that Deny (``aws:SecureTransport = false``) denies every object
    request. Here statements with a Condition are left out of the evaluation (the emulator
    is reached over plain HTTP on 127.0.0.1, where TLS is not what is being tested)."""
    from moto.s3.models import FakeBucket

    LOGGING = "logging.s3.amazonaws.com"

    def _log_permissions_enabled_policy(target_bucket: FakeBucket, target_prefix: str | None) -> bool:
        if not target_bucket.policy:
            return False
        arn = f"arn:{target_bucket.partition}:s3:::{target_bucket.name}"
        accepted = {f"{arn}/{target_prefix or ''}*", f"{arn}/*", arn}
        statements = json.loads(target_bucket.policy.decode()).get("Statement", [])
        for stmt in statements if isinstance(statements, list) else [statements]:
            principal = stmt.get("Principal")
            services = principal.get("Service") if isinstance(principal, dict) else None
            services = [services] if isinstance(services, str) else (services or [])
            actions = stmt.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            resources = stmt.get("Resource", [])
            resources = [resources] if isinstance(resources, str) else resources
            if (LOGGING in services and stmt.get("Effect") == "Allow" and "s3:PutObject" in actions
                    and accepted & set(resources)):
                return True
        return False

    def get_permission(self: FakeBucket, action: str, resource: str) -> Any:
        from moto.iam.access_control import IAMPolicy, PermissionResult

        if self.policy is None:
            return PermissionResult.NEUTRAL
        policy = json.loads(self.policy.decode())
        statements = policy.get("Statement", [])
        statements = statements if isinstance(statements, list) else [statements]
        kept = [s for s in statements if "Condition" not in s]
        if not kept:
            return PermissionResult.NEUTRAL
        return IAMPolicy(json.dumps({**policy, "Statement": kept})).is_action_permitted(action, resource)

    FakeBucket._log_permissions_enabled_policy = staticmethod(_log_permissions_enabled_policy)
    FakeBucket.get_permission = get_permission
    INSTALLED.append("s3: logging check with Principal '*', policy statements with Condition")


def install() -> list[str]:
    """Apply every shim once; returns what was installed (logged by the server)."""
    if not INSTALLED:
        _fsx()
        _stepfunctions()
        _s3()
    return list(INSTALLED)
