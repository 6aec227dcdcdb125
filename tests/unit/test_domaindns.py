"""The records a domain is asked to publish, and the SPF rule of the probe
(the probe itself runs against real DNS in test_api_domains.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from e2a.core.accounts import domaindns

HOST = "mx.e2a.example"


@pytest.mark.parametrize("record", [
    f"v=spf1 include:{HOST} -all", f"v=spf1 ip4:192.0.2.1 +include:{HOST} ~all",
    f"V=SPF1 A:{HOST.upper()} -all", f"v=spf1 redirect={HOST}",
])
def test_spf_terms_that_authorize_our_host(record):
    assert domaindns.spf_authorizes(record, HOST, mx_is_ours=False)


@pytest.mark.parametrize("record", [
    "v=spf1 -all", f"v=spf1 -include:{HOST} -all", f"v=spf1 ~a:{HOST}",
    f"v=spf1 ?include:{HOST}", f"v=spf1 include:x{HOST} -all", f"v=spf10 include:{HOST}",
    f"include:{HOST}", f"e2a-verification=include:{HOST}", "v=spf1 mx -all", "",
])
def test_spf_records_that_do_not(record):
    assert not domaindns.spf_authorizes(record, HOST, mx_is_ours=False)


def test_bare_mx_counts_only_while_our_host_is_the_mx():
    assert domaindns.spf_authorizes("v=spf1 mx -all", HOST, mx_is_ours=True)
    assert domaindns.spf_authorizes("v=spf1 +mx -all", HOST, mx_is_ours=True)
    assert not domaindns.spf_authorizes("v=spf1 -mx", HOST, mx_is_ours=True)


def test_records_to_publish():
    cfg = SimpleNamespace(mail=SimpleNamespace(hostname=HOST))
    row = {"domain": "d.example", "verification_token": "abc", "dkim_selector": "e2a",
           "dkim_public_key": "MIIB"}
    assert domaindns.records(cfg, row) == {
        "mx": {"host": "d.example", "value": HOST, "priority": 10},
        "txt": {"host": "_e2a.d.example", "value": "e2a-verification=abc", "priority": 0},
        "dkim": {"host": "e2a._domainkey.d.example", "value": "v=DKIM1; k=rsa; p=MIIB",
                 "priority": 0},
    }
    # A row from before keys existed: an empty DKIM record, never null.
    assert domaindns.records(cfg, {**row, "dkim_public_key": None})["dkim"] == {
        "host": "", "value": "", "priority": 0}
