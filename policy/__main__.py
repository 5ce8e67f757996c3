"""The mailman policy pack (Pulumi CrossGuard): the promises of policy/rules.py, enforced.

    pulumi preview --policy-pack policy      # the preview workflow does this for every PR

Pulumi runs this file in policy/venv (PulumiPolicy.yaml), installed from policy/requirements.txt.
Every rule is mandatory: a violation fails the preview. Properties reach a policy unwrapped from
their secret markers and, during a preview, with values not known yet that the SDK refuses to
read (pulumi-policy 1.21.0 pulumi_policy/policy.py `Analyze`: `deserialize_properties` without
`proxy_secrets`, then `unknown_checking_proxy`; proxy.py raises `UnknownValueError`); `rules.plain`
turns them into plain values with `rules.UNKNOWN` in those places.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rules  # policy/ is not a package: its directory is put on the path above


def _resource(args: ResourceValidationArgs) -> rules.Resource:
    return rules.Resource(
        type=args.resource_type,
        name=args.name,
        urn=args.urn,
        props=rules.plain_props(args.props, UnknownValueError),
        protect=bool(args.opts.protect),
    )


def _policy(rule: rules.Rule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in rule.check(_resource(args)):
            report_violation(message, args.urn)

    return ResourceValidationPolicy(
        name=rule.name,
        description=rule.description,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


PolicyPack(name="mailman", policies=[_policy(rule) for rule in rules.RULES])
