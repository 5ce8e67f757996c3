"""Run policy/__main__.py's policies with the real pulumi-policy SDK, without the engine.

    <policy venv>/bin/python policy_sdk_driver.py POLICY_DIR < resources.json > violations.json

Run by tests/components/test_policy.py in the policy pack's own virtualenv. Every resource is
handed to every policy the way the SDK's analyzer hands it over (pulumi-policy 1.21.0
pulumi_policy/policy.py `Analyze`: properties behind `unknown_checking_proxy`, the options as
`PolicyResourceOptions`, one `ResourceValidationArgs`). Only `PolicyPack` is replaced: the real
one serves the engine over gRPC and never returns.
"""

import json
import runpy
import sys
from typing import Any

import pulumi_policy
from pulumi_policy import PolicyResourceOptions, ResourceValidationArgs
from pulumi_policy.proxy import unknown_checking_proxy

policies: list[Any] = []


class CapturedPack:
    def __init__(self, name: str, policies: list[Any], **_: Any) -> None:
        globals()["policies"].extend(policies)
        globals()["pack_name"] = name


pulumi_policy.PolicyPack = CapturedPack  # type: ignore[misc,assignment]
runpy.run_path(f"{sys.argv[1]}/__main__.py", run_name="__main__")

found = []
for resource in json.load(sys.stdin):
    options = PolicyResourceOptions(resource["protect"], [], False, [], None, [], None)
    for policy in policies:
        args = ResourceValidationArgs(
            resource["type"],
            unknown_checking_proxy(resource["props"]),
            resource["urn"],
            resource["name"],
            options,
            None,
            {},
            {},
        )
        policy.validate(
            args,
            lambda message, urn=None, name=policy.name: found.append([name, message, urn]),
        )
json.dump(
    {
        "pack": globals().get("pack_name"),
        "policies": [[p.name, p.enforcement_level.value] for p in policies],
        "violations": found,
    },
    sys.stdout,
)
