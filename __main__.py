"""Mailman 3 on NixOS on Hetzner Cloud: read the stack settings, build the site, export outputs."""

import pulumi

from components.settings import load_settings
from components.site import MailmanSite

settings = load_settings()
site = MailmanSite("mailman", settings)
for name, value in site.outputs().items():
    pulumi.export(name, value)
