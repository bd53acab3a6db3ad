"""DKIM signatures made in Rust, checked by an independent verifier (dkimpy), on messages
built locally and on messages read back from a real Postfix Maildir."""

from __future__ import annotations

import email.parser
import email.policy
import uuid
from pathlib import Path

import dkim
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

import fastsmtp
from fastsmtp.testing import CaptureServer
from tests.peers import PostfixInstance

PARSER = email.parser.BytesParser(policy=email.policy.default)


def rsa_pem(bits: int = 2048, *, pkcs1: bool = False) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    fmt = (
        serialization.PrivateFormat.TraditionalOpenSSL
        if pkcs1
        else serialization.PrivateFormat.PKCS8
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def ed25519_pem() -> bytes:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def rsa_signer() -> fastsmtp.DKIMSigner:
    return fastsmtp.DKIMSigner("example.com", "s2048", rsa_pem())


@pytest.fixture(scope="module")
def ed_signer() -> fastsmtp.DKIMSigner:
    return fastsmtp.DKIMSigner("example.com", "ed", ed25519_pem())


def verifies(message: bytes, *signers: fastsmtp.DKIMSigner) -> bool:
    """dkimpy's verdict, with DNS answered from the signers' own records."""
    records = {
        f"{s.selector}._domainkey.{s.domain}.".encode(): s.dns_record.encode() for s in signers
    }

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return records.get(name if name.endswith(b".") else name + b".", b"")

    return bool(dkim.verify(message, dnsfunc=dnsfunc))


def shapes(tmp_path: Path) -> dict[str, fastsmtp.Message]:
    common = {"sender": "Ann Sender <ann@example.com>", "to": ["bob@example.org"]}
    pdf = tmp_path / "r.pdf"
    pdf.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 400)
    return {
        "text": fastsmtp.Message(**common, subject="Hi", text="Hello\n\n\n"),
        "alternative": fastsmtp.Message(
            **common,
            cc=["Carol <carol@example.net>"],
            subject="Grüße aus Köln, a long subject that has to be folded over several lines",
            text="Plain  text   with  runs   of spaces \t\nand trailing space   \n",
            html="<p>Hello <b>world</b></p>",
            headers={"List-Unsubscribe": "<https://example.com/unsubscribe?id=123456789>"},
        ),
        "attachment": fastsmtp.Message(
            **common,
            subject="Report",
            text=".leading dot line\r\n\r\n",
            attachments=[fastsmtp.Attachment.from_path(pdf)],
        ),
        "empty body": fastsmtp.Message(**common, subject="Nothing", text=""),
    }


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_signatures_verify_for_every_message_shape(
    algorithm: str,
    rsa_signer: fastsmtp.DKIMSigner,
    ed_signer: fastsmtp.DKIMSigner,
    tmp_path: Path,
) -> None:
    signer = rsa_signer if algorithm == "rsa" else ed_signer
    for name, message in shapes(tmp_path).items():
        signed = message.as_bytes(dkim=signer)
        assert signed.startswith(b"DKIM-Signature: v=1; a=" + signer.algorithm.encode()), name
        assert verifies(signed, signer), name
        assert max(len(line) for line in signed.split(b"\r\n")) <= 78, name


def test_pkcs1_keys_and_the_dns_record(tmp_path: Path) -> None:
    signer = fastsmtp.DKIMSigner("Example.COM.", "sel", rsa_pem(3072, pkcs1=True))
    assert (signer.domain, signer.selector, signer.algorithm) == (
        "example.com",
        "sel",
        "rsa-sha256",
    )
    assert signer.dns_record.startswith("v=DKIM1; k=rsa; p=MII")
    assert verifies(shapes(tmp_path)["text"].as_bytes(dkim=signer), signer)


def test_tampering_breaks_the_signature(rsa_signer: fastsmtp.DKIMSigner, tmp_path: Path) -> None:
    signed = shapes(tmp_path)["alternative"].as_bytes(dkim=rsa_signer)
    assert verifies(signed, rsa_signer)
    assert not verifies(signed.replace(b"Hello <b>world", b"Hello <b>WORLD"), rsa_signer)
    assert not verifies(signed.replace(b"Subject:", b"Subject: Re:"), rsa_signer)
    # Over-signing: a second From added in transit is caught.
    head, _, rest = signed.partition(b"\r\nFrom:")
    assert not verifies(head + b"\r\nFrom: mallory@evil.example\r\nFrom:" + rest, rsa_signer)
    # A header that is not signed may be added.
    assert verifies(b"Received: from relay\r\n" + signed, rsa_signer)


def test_only_chosen_headers_are_signed_and_from_always(tmp_path: Path) -> None:
    signer = fastsmtp.DKIMSigner("example.com", "s", ed25519_pem(), headers=["Subject"])
    signed = shapes(tmp_path)["text"].as_bytes(dkim=signer)
    header = PARSER.parsebytes(signed)["DKIM-Signature"]
    tags = dict(t.strip().split("=", 1) for t in str(header).split(";") if "=" in t)
    assert tags["h"].replace(" ", "") == "from:from:subject:subject"
    assert verifies(signed.replace(b"To: bob@example.org", b"To: eve@example.org"), signer)


@pytest.mark.parametrize(
    ("domain", "selector", "key", "words"),
    [
        ("exa mple.com", "s", None, "domain"),
        ("example.com", "s;x=1", None, "selector"),
        ("example.com", "s\r\nBcc: x", None, "selector"),
        ("example.com", "s", b"not a key", "PEM"),
        (
            "example.com",
            "s",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "PRIVATE KEY",
        ),
    ],
)
def test_bad_identities_raise_invalid_message(
    domain: str, selector: str, key: bytes | None, words: str
) -> None:
    with pytest.raises(fastsmtp.InvalidMessage) as info:
        fastsmtp.DKIMSigner(domain, selector, key or ed25519_pem())
    assert info.value.field == "dkim"
    assert words in str(info.value)


def test_small_rsa_keys_are_refused() -> None:
    with pytest.raises(fastsmtp.InvalidMessage, match="unusable"):
        fastsmtp.DKIMSigner("example.com", "s", rsa_pem(1024))


def test_sign_bytes_normalizes_line_breaks_first(ed_signer: fastsmtp.DKIMSigner) -> None:
    raw = b"From: ann@example.com\nTo: bob@example.org\nSubject: raw\n\nline one\rline two\n"
    signed = ed_signer.sign_bytes(raw, 1_700_000_000)
    assert b"\r\n" in signed and b"\n" not in signed.replace(b"\r\n", b"")
    assert b"t=1700000000;" in signed
    assert verifies(signed, ed_signer)


async def test_engine_signs_batches_and_single_sends_aiosmtpd(
    rsa_signer: fastsmtp.DKIMSigner,
) -> None:
    template = fastsmtp.Message(
        sender="ann@example.com", subject="Hi {{ name }}", text="For {{ address }}"
    )
    recipients = [fastsmtp.Recipient(address=f"u{i}@example.org", name=f"U{i}") for i in range(20)]
    with CaptureServer() as server:
        async with fastsmtp.Engine("127.0.0.1", server.port, tls="none", dkim=rsa_signer) as engine:
            report = await engine.send_batch(template, recipients)
            await engine.send(
                fastsmtp.Message(sender="ann@example.com", to=["x@example.org"], text="one")
            )
            await engine.send_raw(
                "ann@example.com", ["y@example.org"], b"From: ann@example.com\n\nraw\n"
            )
        captured = server.wait_for(22)
    assert report.accepted == 20
    assert all(verifies(m.content, rsa_signer) for m in captured)
    assert sum(m.content.count(b"DKIM-Signature:") for m in captured) == 22


async def test_signatures_survive_postfix(
    postfix: PostfixInstance, ed_signer: fastsmtp.DKIMSigner, tmp_path: Path
) -> None:
    """Through a real MTA (which adds Return-Path, Received and Delivered-To on top, and
    takes the message over STARTTLS with BDAT): the Maildir copy still verifies."""
    assert postfix.pki is not None
    address = f"dkim-{uuid.uuid4().hex[:8]}@example.org"
    message = msgspec.structs.replace(shapes(tmp_path)["attachment"], to=[address])
    async with fastsmtp.Engine(
        postfix.host,
        postfix.port,
        tls="starttls",
        ssl_context=postfix.pki.client_context(),
        dkim=ed_signer,
    ) as engine:
        (result,) = await engine.send(message)
    assert result.status == "accepted"
    (raw,) = postfix.messages_for(address, expected=1)
    assert not raw.startswith(b"DKIM-Signature")  # Postfix put its trace headers first
    assert verifies(raw, ed_signer)
