"""DNS for the site: record sets in the Hetzner zone, or the exact list to create elsewhere.

The records come from `components.dns_records.site_records`. Which record sets exist depends
only on settings (known while the program is evaluated); their values depend on the addresses
and the DKIM key (known after those resources exist). So the set of resources is fixed up front,
and only values flow through outputs: resources are never created inside `apply`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pulumi
import pulumi_hcloud as hcloud

from components.dns_records import (
    MtaStsPolicy,
    Record,
    in_zone,
    site_records,
    txt_presentation,
)
from components.settings import Settings

_PLACEHOLDER_PEM = "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n"


def _records(settings: Settings, ipv4: str, ipv6: str, dkim_public_key_pem: str) -> list[Record]:
    return site_records(
        hostname=settings.hostname,
        mail_domains=settings.mail_domains,
        ipv4=ipv4,
        ipv6=ipv6,
        admin_email=settings.admin_email,
        dmarc_policy=settings.dmarc_policy,
        dkim_selector=settings.dkim_selector,
        dkim_public_key_pem=dkim_public_key_pem,
        mta_sts=MtaStsPolicy.for_certificates(acme_staging=settings.acme_staging),
    )


def exported_record(record: Record) -> dict[str, object]:
    """A record as the `dnsRecords` output shows it: TXT values in zone-file quoting."""
    values = [txt_presentation(v) if record.type == "TXT" else v for v in record.values]
    return {**record.as_dict(), "values": values}


def _values_at(index: int) -> Callable[[list[Record]], list[str]]:
    return lambda records: list(records[index].values)


def _resource_suffix(record: Record, zone: str) -> str:
    relative = record.relative_to(zone)
    label = "apex" if relative == "@" else re.sub(r"[^a-z0-9-]+", "-", relative).strip("-")
    return f"{record.type.lower()}-{label}"


class Dns(pulumi.ComponentResource):
    """Record sets in `settings.dns_zone` (none when it is unset) and the records as data."""

    records: pulumi.Output[list[dict[str, object]]]
    published: pulumi.Output[list[Record]]
    record_sets: list[hcloud.ZoneRrset]

    def __init__(
        self,
        name: str,
        settings: Settings,
        *,
        ipv4: pulumi.Input[str],
        ipv6: pulumi.Input[str],
        dkim_public_key_pem: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("mailman:dns:Dns", name, {}, opts)
        computed = pulumi.Output.all(ipv4, ipv6, dkim_public_key_pem).apply(
            lambda v: _records(settings, str(v[0]), str(v[1]), str(v[2]))
        )
        self.records = computed.apply(lambda rs: [exported_record(r) for r in rs])
        # The same records as values (TXT unquoted), for the deployment document.
        self.published = computed

        self.record_sets = []
        zone = settings.dns_zone
        if zone is not None:
            shapes = _records(settings, "192.0.2.1", "2001:db8::1", _PLACEHOLDER_PEM)
            for index, shape in enumerate(shapes):
                if shape not in in_zone([shape], zone):
                    continue
                values = computed.apply(_values_at(index))
                self.record_sets.append(
                    hcloud.ZoneRrset(
                        f"{name}-{_resource_suffix(shape, zone)}",
                        zone=zone,
                        name=shape.relative_to(zone),
                        type=shape.type,
                        ttl=shape.ttl,
                        records=self._record_values(shape.type, values),
                        labels=settings.labels,
                        opts=pulumi.ResourceOptions(parent=self),
                    )
                )
        self.register_outputs({"records": self.records})

    @staticmethod
    def _record_values(
        type_: str, values: pulumi.Output[list[str]]
    ) -> pulumi.Output[list[hcloud.ZoneRrsetRecordArgs]]:
        if type_ != "TXT":
            return values.apply(lambda vs: [hcloud.ZoneRrsetRecordArgs(value=v) for v in vs])
        # TXT values go through the provider's own formatter (quoted 255-character strings).
        return values.apply(
            lambda vs: pulumi.Output.all(*[hcloud.txt_record_output(record=v) for v in vs]).apply(
                lambda formatted: [hcloud.ZoneRrsetRecordArgs(value=f) for f in formatted]
            )
        )
