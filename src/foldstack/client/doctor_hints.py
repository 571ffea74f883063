"""Every "how to fix" text `foldstack doctor` prints, in one place, so that a test can run
each command they name (a `make` target with `make -n`, a `foldstack` command and its
options, an `aws` operation and its parameters, a `gh workflow run` file) and catch a hint
that names something that does not exist (tests/client/test_doctor_hints.py).

Deploys differ by environment: `make apply` refuses prod outside CI (terraform.mk), so a
prod hint names the deploy workflow instead.
"""

from __future__ import annotations

# Environments `make apply` refuses outside GitHub Actions (terraform/terraform.mk, tf-env-check).
CI_ONLY_ENVS = ("prod",)


def apply_hint(env: str, what: str) -> str:
    """How to (re)apply `what` (a module, in words) to `env`."""
    if env in CI_ONLY_ENVS:
        return (f"{what} is applied by the deploy workflow: merge to main (or `gh workflow run deploy.yml`) and "
                f"approve the {env} deployment; {env} is never applied by hand (docs/operations.md)")
    return f"apply {what}: `make plan ENV={env}` then `make apply ENV={env}` (docs/operations.md)"


def images_hint(env: str) -> str:
    head = ("push the images of this commit: `gh workflow run deploy.yml` builds them once into dev's registry and "
            "promotes them to prod's by digest (docs/operations.md)")
    if env in CI_ONLY_ENVS:
        return f"{head}; it then plans and applies {env} after approval"
    return f"{head}; or by hand `make plan ENV={env} IMAGE_TAG=<sha>` then `make apply ENV={env}`"


def access_hint(operation: str) -> str:
    return f"allow {operation} for the caller, then run doctor again"


def ec2_quota_hint(code: str, vcpus: int) -> str:
    return (f"`aws service-quotas request-service-quota-increase --service-code ec2 --quota-code {code} "
            f"--desired-value {vcpus}` (or lower the CEs' max_vcpus)")


def queues_hint(env: str) -> str:
    return f"`foldstack config show --env {env}` lists the queues the client found in SSM"


def db_uri_hint(env: str) -> str:
    return apply_hint(env, f"the config module (it publishes /foldstack/{env}/db_uri)")


def refresh_hint(state_machine_name: str, db_uri: str | None) -> str:
    name = state_machine_name.rsplit("-", 1)[0] + "-refresh_databases"
    return (f"publish them with the refresh_databases workflow: `aws stepfunctions start-execution "
            f"--state-machine-arn <arn of {name}> --input file://databases.json` (docs/architecture.md, "
            f"Database lifecycle), or `foldstack step refresh-db --run-id <id> --scratch <dir> "
            f"--db {db_uri or '<db_uri>'} --spec <json>`")


def catalogue_hint(refs: list[str]) -> str:
    """Publishing catalogue entries: what `foldstack db catalogue` lists, as refresh specs."""
    specs = ", ".join(f'{{"catalogue": "{r}"}}' for r in refs) or '{"catalogue": "<name>@<version>"}'
    return (f"`foldstack db catalogue` lists what can be fetched; publish {specs} with the refresh_databases "
            "workflow (docs/architecture.md, Database lifecycle)")


def preset_hint(preset: str, refs: list[str], uncatalogued: dict[str, str]) -> str:
    """What the default preset lacks: catalogue entries to publish, and roles no entry serves."""
    text = f"for {preset}: " + catalogue_hint(refs)
    if uncatalogued:
        text += "; not in the catalogue: " + "; ".join(f"{r} from {how}" for r, how in uncatalogued.items())
    return text


def weights_hint(where: str) -> str:
    return (f"`foldstack weights fetch <engine> --dest ./weights` then "
            f"`aws s3 sync ./weights/<engine> {where}<engine>/`")


def fsx_hint(env: str) -> str:
    return ("`aws fsx describe-data-repository-associations` shows why (a MISCONFIGURED association names its "
            "cause); then " + apply_hint(env, "the fsx module"))


def every_hint(env: str, *, state_machine_name: str = "foldstack-dev-fold", db_uri: str = "s3://b/db") -> list[str]:
    """Each hint above, filled in as doctor fills it (for the test)."""
    return [apply_hint(env, "the batch module"), apply_hint(env, "the fsx module"), images_hint(env),
            access_hint("ListServiceQuotas"), ec2_quota_hint("L-DB2E81BA", 512), queues_hint(env), db_uri_hint(env),
            refresh_hint(state_machine_name, db_uri), catalogue_hint([]),
            catalogue_hint(["uniref90@2022_05", "small_bfd@alphafold-reduced-dbs"]),
            preset_hint("reduced_dbs", ["mgnify@2022_05"], {"colabfold_envdb": "ColabFold's setup_databases.sh"}),
            weights_hint(f"{db_uri}/weights/"), fsx_hint(env)]
