"""Pulumi ComponentResources, one per concern; composed by components.site.MailmanSite."""
