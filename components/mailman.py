"""Post-deploy reconcile: one `mailman-reconcile` run on the host with the desired state on stdin.

The desired-state document (docs/contracts.md section 5) holds passwords, so the resource that
sends it is secret and logs nothing but the reconcile's summary. Its non-secret parts -- the
normalized lists above all -- are also inputs of their own as readable YAML, so `pulumi preview
--diff` shows a list edit line by line. The reconcile runs again only when one of them changes,
or on a new server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_command as command
import yaml

from components.nixos import remote_command

DESIRED_STATE_VERSION = 1


@dataclass(frozen=True)
class SocialApp:
    """A django-allauth provider app (`mailman:socialLogins`)."""

    provider: str
    """allauth provider id, e.g. "github"."""
    name: str
    """Display name, e.g. "GitHub"."""
    client_id: str
    secret: pulumi.Input[str]
    """The client secret; only ever inside the secret desired-state document."""


# Display names of common django-allauth providers; others get their id capitalized.
_PROVIDER_NAMES = {
    "github": "GitHub",
    "gitlab": "GitLab",
    "google": "Google",
    "openid_connect": "OpenID Connect",
    "microsoft": "Microsoft",
    "keycloak": "Keycloak",
}


def provider_display_name(provider: str) -> str:
    """What the login page calls the provider, e.g. "GitHub" for "github"."""
    return _PROVIDER_NAMES.get(provider, provider.replace("_", " ").title())


def readable_yaml(value: object) -> str:
    """Block-style YAML whose diff reads line by line.

    Key order is kept: the normalized lists put `address` first, which makes a diff name its list.
    """
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=False, allow_unicode=True)


@dataclass(frozen=True)
class DesiredState:
    """What `mailman-reconcile` makes the site look like (contracts section 5)."""

    hostname: str
    mail_domains: Sequence[str]
    admin_user: str
    admin_email: str
    admin_password: pulumi.Input[str]
    lists: Sequence[Mapping[str, Any]]
    """The normalized lists (contracts section 6), sorted by address."""
    social_apps: Sequence[SocialApp] = ()

    def public(self) -> dict[str, Any]:
        """The desired state without lists and without secrets (what previews may show)."""
        return {
            "site": {"domain": self.hostname, "name": self.hostname},
            "superuser": {"username": self.admin_user, "email": self.admin_email},
            "mailDomains": list(self.mail_domains),
            "webHost": self.hostname,
            "socialApps": [
                {"provider": app.provider, "name": app.name, "clientId": app.client_id}
                for app in self.social_apps
            ],
        }

    def lists_yaml(self) -> str:
        return readable_yaml({"lists": [dict(entry) for entry in self.lists]})

    def document(self) -> pulumi.Output[str]:
        """The JSON document for stdin, as a secret Output."""
        public = self.public()

        def render(password: str, app_secrets: list[str]) -> str:
            document = {
                "version": DESIRED_STATE_VERSION,
                **public,
                "superuser": {**public["superuser"], "password": password},
                "lists": [dict(entry) for entry in self.lists],
                "socialApps": [
                    {**app, "secret": secret}
                    for app, secret in zip(public["socialApps"], app_secrets, strict=True)
                ],
            }
            return json.dumps(document, sort_keys=True)

        secrets = pulumi.Output.all(*[app.secret for app in self.social_apps])
        return pulumi.Output.secret(
            pulumi.Output.all(self.admin_password, secrets).apply(
                lambda args: render(args[0], args[1])
            )
        )


class MailmanReconcile(pulumi.ComponentResource):
    """Bring Mailman core and mailman-web to the desired state with `mailman-reconcile`."""

    run: command.remote.Command

    def __init__(
        self,
        name: str,
        *,
        connection: command.remote.ConnectionArgs,
        server_id: pulumi.Input[str],
        depends_on: Sequence[pulumi.Resource],
        desired: DesiredState,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Args:
        connection: `Host.connection` (pinned host key).
        server_id: the server's id; a replaced server is reconciled again.
        depends_on: what must be in place first (`NixosDeployment.ready`).
        desired: the site, superuser, domains, lists and social apps to reconcile to.
        """
        super().__init__("mailman:mailman:MailmanReconcile", name, {}, opts)
        self.run = remote_command(
            f"{name}-run",
            connection=connection,
            parent=self,
            depends_on=depends_on,
            # As root: the wrapper (nixos/scripts/mailman-reconcile.sh) turns the program's exit
            # 10 ("converged, the Site was renamed") into a restart of the web app and success.
            create="mailman-reconcile",
            stdin=desired.document(),
            # Readable copies of the non-secret desired state: previews diff these as text.
            triggers=[desired.lists_yaml(), readable_yaml(desired.public()), server_id],
            secret=True,
            failure_reason="mailman-reconcile failed",
            # Its own one-line refusals (nixos/mailman_reconcile.py ReconcileError, the wrapper's
            # messages) name the list and field and hold no secret: they follow that line.
            public_prefix="mailman-reconcile: ",
            # The summary on stdout is all that is logged; stderr could echo input on a crash.
            logging=command.remote.Logging.STDOUT,
        )
        self.register_outputs({"summary": self.run.stdout})
