"""Mailman 3 on NixOS on Hetzner Cloud: read the stack settings, build the site, export outputs."""

import pulumi

from components.preflight import run_preflight
from components.settings import load_settings
from components.site import MailmanSite

settings = load_settings()
# Asks Hetzner (and checks SSH_AUTH_SOCK) before any resource is registered.
facts = run_preflight(settings)
site = MailmanSite("mailman", settings, facts=facts)
for name, value in site.outputs().items():
    pulumi.export(name, value)
