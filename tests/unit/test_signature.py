from __future__ import annotations

import hashlib
import hmac
import inspect

import pytest

from connectors import signature
from connectors.signature import SignatureError, sign, verify

BODY = b'{"external_id":"1"}'
NOW = 1_764_000_000


def test_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    expected = hmac.new(b"s3cret", f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign("s3cret", NOW, BODY) == f"v1={expected}"


def test_valid_signature_passes() -> None:
    verify(["s3cret"], str(NOW), sign("s3cret", NOW, BODY), BODY, NOW + 10, 300)


@pytest.mark.parametrize(
    ("secret", "body", "reason"),
    [("wrong", BODY, "bad_signature"), ("s3cret", BODY + b" ", "bad_signature")],
)
def test_forged_signature_fails(secret: str, body: bytes, reason: str) -> None:
    with pytest.raises(SignatureError) as info:
        verify(["s3cret"], str(NOW), sign(secret, NOW, BODY), body, NOW, 300)
    assert info.value.reason == reason


@pytest.mark.parametrize("skew", [301, -301])
def test_replay_outside_tolerance_fails(skew: int) -> None:
    with pytest.raises(SignatureError) as info:
        verify(["s3cret"], str(NOW), sign("s3cret", NOW, BODY), BODY, NOW + skew, 300)
    assert info.value.reason == "stale_timestamp"


def test_timestamp_cannot_be_swapped() -> None:
    sig = sign("s3cret", NOW - 1000, BODY)
    with pytest.raises(SignatureError, match="does not match"):
        verify(["s3cret"], str(NOW), sig, BODY, NOW, 300)


def test_missing_headers_fail() -> None:
    with pytest.raises(SignatureError) as info:
        verify(["s3cret"], None, None, BODY, NOW, 300)
    assert info.value.reason == "missing_signature"


def test_rotation_accepts_old_or_new_secret_and_several_signatures() -> None:
    verify(["new", "old"], str(NOW), sign("old", NOW, BODY), BODY, NOW, 300)
    both = f"{sign('other', NOW, BODY)} {sign('new', NOW, BODY)}"
    verify(["new"], str(NOW), both, BODY, NOW, 300)


def test_comparison_is_constant_time() -> None:
    assert "compare_digest" in inspect.getsource(signature.verify)
    assert "==" not in inspect.getsource(signature.verify).split("matched = False")[1]
