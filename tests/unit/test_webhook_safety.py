"""Webhook destinations and signatures, pure: which addresses are refused, two signatures during a rotation's
grace window, and the pinned request that keeps its Host and TLS server name."""

from __future__ import annotations

import time

import pytest

from service.domain.notify.webhooks import pinned, refused_address, sign, verify_signature


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6 is judged as the IPv4 address
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1%eth0", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("100.64.0.1", "not a public address"),  # carrier-grade NAT
    ],
)
def test_addresses_that_are_not_public_are_refused(address, kind):
    reason = refused_address(address)
    assert reason is not None and kind in reason and address in reason


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address):
    assert refused_address(address) is None


def test_a_rotation_signs_with_both_secrets_and_each_verifies():
    body, now = b'{"type":"ping"}', int(time.time())
    header = sign(["whsec_new", "whsec_old"], body, now)
    assert header.startswith(f"t={now},v1=") and header.count("v1=") == 2
    assert verify_signature("whsec_new", header, body) and verify_signature("whsec_old", header, body)
    assert not verify_signature("whsec_other", header, body)
    assert not verify_signature("whsec_old", header, body + b" ")
    assert sign("whsec_new", body, now) == header.rsplit(",", 1)[0]  # the current secret's signature comes first


def test_a_header_with_two_timestamps_or_none_is_refused():
    body, now = b"{}", int(time.time())
    good = sign("whsec_a", body, now)
    assert not verify_signature("whsec_a", f"t={now},{good}", body)
    assert not verify_signature("whsec_a", good.split(",", 1)[1], body)


def test_a_pinned_request_goes_to_the_checked_address_as_the_named_host():
    url, headers, extensions = pinned("https://hooks.example.com:8443/in?x=1", "93.184.216.34")
    assert url == "https://93.184.216.34:8443/in?x=1"
    assert headers == {"Host": "hooks.example.com:8443"} and extensions == {"sni_hostname": "hooks.example.com"}
    url, headers, extensions = pinned("http://hooks.example.com/in", "2606:4700:4700::1111")
    assert url == "http://[2606:4700:4700::1111]/in"
    assert headers == {"Host": "hooks.example.com"} and extensions == {}
