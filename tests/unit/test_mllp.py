"""The MLLP listener over real sockets: framing, ACK timing, repeats, limits, allow-list, TLS."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adapter.service.mllp import END, START, Accepted, AckStore, Duplicate, Frames, MllpServer, MllpSettings
from tests.support.hl7v2 import message, msh, obx, oru, pid

SB, EB = START, END


class FakeInbox:
    """Records what the listener hands over; ``fail`` makes the next accept raise."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.fail = False

    async def accept(self, source: str, key: str, bundle: dict[str, Any]) -> Accepted | Duplicate:
        if self.fail:
            raise OSError("disk full")
        full = f"{source}:{key}"
        if full in self.items:
            return Duplicate(full)
        self.items[full] = bundle
        return Accepted(full)


async def start(tmp_path: Path, **overrides: Any) -> tuple[MllpServer, FakeInbox]:
    inbox = FakeInbox()
    settings = MllpSettings(host="127.0.0.1", port=0, facilities={"LAB1": "lab", "ADT1": "adt"}, **overrides)
    server = MllpServer(settings, inbox.accept, AckStore(tmp_path / "acks.sqlite"))
    await server.start()
    return server, inbox


async def exchange(
    port: int, *payloads: bytes, tls: ssl.SSLContext | None = None, answers: int | None = None
) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    for payload in payloads:
        writer.write(payload)
    await writer.drain()
    acks = []
    for _ in range(len(payloads) if answers is None else answers):
        frame = await asyncio.wait_for(reader.readuntil(EB), 10)
        acks.append(frame[frame.index(SB) + 1 : -2])
    writer.close()
    return acks


def framed(raw: bytes) -> bytes:
    return SB + raw + EB


def msa(ack: bytes) -> list[str]:
    return ack.decode().split("\r")[1].split("|")


def test_frames_survive_any_split_and_ignore_bytes_between_frames():
    stream = b"junk" + framed(b"MSH|one") + b"\r\n" + framed(b"MSH|two") + framed(b"MSH|three")
    for size in (1, 2, 3, 7, len(stream)):
        frames = Frames(max_bytes=1000)
        events = [e for i in range(0, len(stream), size) for e in frames.feed(stream[i : i + size])]
        assert events == [("message", b"MSH|one"), ("message", b"MSH|two"), ("message", b"MSH|three")], size


def test_frames_oversized_and_truncated():
    frames = Frames(max_bytes=100)
    events = frames.feed(SB + b"MSH|" + b"x" * 200)
    assert events[0][0] == "too-large"
    assert frames.feed(b"y" * 500 + EB + framed(b"MSH|ok")) == [("message", b"MSH|ok")]
    assert Frames(100).feed(SB + b"MSH|cut" + framed(b"MSH|next")) == [
        ("truncated", b"MSH|cut"),
        ("message", b"MSH|next"),
    ]


async def test_positive_ack_after_accept_and_repeat_gets_the_original_ack(tmp_path):
    server, inbox = await start(tmp_path)
    try:
        raw = oru("C1", "M1", "F1", obx(1, "150"))
        [first] = await exchange(server.port, framed(raw))
        assert msa(first)[:3] == ["MSA", "AA", "C1"]
        assert list(inbox.items) == ["lab:LIS|LAB1|C1"]
        [again] = await exchange(server.port, framed(raw))
        assert again == first  # byte for byte, from the ACK store
        assert len(inbox.items) == 1
    finally:
        await server.close()


async def test_several_messages_per_connection_in_order_with_partial_writes(tmp_path):
    server, inbox = await start(tmp_path)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        stream = b"".join(framed(oru(f"S{n}", "M1", f"F{n}", obx(1, "150"))) for n in range(5))
        for i in range(0, len(stream), 37):
            writer.write(stream[i : i + 37])
            await writer.drain()
            await asyncio.sleep(0)
        controls = []
        for _ in range(5):
            frame = await asyncio.wait_for(reader.readuntil(EB), 10)
            controls.append(msa(frame[1:-2])[2])
        writer.close()
        assert controls == [f"S{n}" for n in range(5)]
        assert len(inbox.items) == 5
    finally:
        await server.close()


async def test_unknown_sender_gets_ar_and_nothing_is_stored(tmp_path):
    server, inbox = await start(tmp_path)
    try:
        [ack] = await exchange(server.port, framed(oru("C1", "M1", "F1", obx(1, "1"), facility="ELSEWHERE")))
        assert msa(ack)[1] == "AR"
        assert "MSH^1^4" in ack.decode() and "not allowed" in ack.decode()
        assert inbox.items == {}
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"\x00\xff garbage", "AR"),
        (message("PID|1||M"), "AR"),  # missing MSH
        (message(msh("C").replace("^~\\&", "^^^^"), pid("M")), "AR"),  # wrong encoding characters
        (oru("C", "M", "F", obx(1, "not a number")), "AE"),
        (message(msh("C"), pid("M")), "AE"),  # an ORU without results
    ],
)
async def test_hostile_and_malformed_messages_get_an_error_ack_and_nothing_is_stored(tmp_path, raw, code):
    server, inbox = await start(tmp_path)
    try:
        [ack] = await exchange(server.port, framed(raw))
        assert msa(ack)[1] == code
        assert "\rERR|" in ack.decode()
        assert inbox.items == {}
        [ok] = await exchange(server.port, framed(oru("OK", "M", "F", obx(1, "1"))))  # the listener lives on
        assert msa(ok)[1] == "AA"
    finally:
        await server.close()


async def test_oversized_message_gets_ar_and_the_connection_goes_on(tmp_path):
    server, inbox = await start(tmp_path, max_message_bytes=2000)
    try:
        big = oru("BIG", "M", "F", obx(1, "x" * 5000, vtype="ST", units=""))
        small = oru("SMALL", "M", "F", obx(1, "1"))
        acks = await exchange(server.port, framed(big), framed(small))
        assert msa(acks[0])[1] == "AR" and msa(acks[0])[2] == "BIG" and "104^" in acks[0].decode()
        assert msa(acks[1])[:3] == ["MSA", "AA", "SMALL"]
        assert list(inbox.items) == ["lab:LIS|LAB1|SMALL"]
    finally:
        await server.close()


async def test_truncated_frame_at_close_stores_nothing(tmp_path):
    server, inbox = await start(tmp_path)
    try:
        raw = oru("CUT", "M", "F", obx(1, "1"))
        assert await exchange(server.port, SB + raw[: len(raw) // 2], answers=0) == []
        await asyncio.sleep(0.1)
        assert inbox.items == {}
    finally:
        await server.close()


async def test_idle_connections_are_closed(tmp_path):
    server, _ = await start(tmp_path, idle_timeout=0.2)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(reader.read(10), 5) == b""  # closed by the server
        writer.close()
    finally:
        await server.close()


async def test_many_concurrent_connections(tmp_path):
    server, inbox = await start(tmp_path)
    try:
        results = await asyncio.gather(
            *(
                exchange(
                    server.port, *(framed(oru(f"K{c}-{n}", "M", f"F{c}-{n}", obx(1, "1"))) for n in range(3))
                )
                for c in range(40)
            )
        )
        assert all(msa(a)[1] == "AA" for acks in results for a in acks)
        assert len(inbox.items) == 120
    finally:
        await server.close()


async def test_storage_failure_gets_ar_so_the_engine_sends_again(tmp_path):
    server, inbox = await start(tmp_path)
    try:
        inbox.fail = True
        raw = oru("C1", "M", "F", obx(1, "1"))
        [ack] = await exchange(server.port, framed(raw))
        assert msa(ack)[1] == "AR" and "207^" in ack.decode()
        inbox.fail = False
        [retry] = await exchange(server.port, framed(raw))
        assert msa(retry)[1] == "AA" and len(inbox.items) == 1
    finally:
        await server.close()


async def test_enhanced_mode_commit_ack_and_never(tmp_path):
    server, inbox = await start(tmp_path)
    try:
        always = message(
            msh("E1", extra="|||AL"), pid("M"), "OBR|1||F1|FBC^Full blood count^99LAB", obx(1, "1")
        )
        [ack] = await exchange(server.port, framed(always))
        assert msa(ack)[:3] == ["MSA", "CA", "E1"]
        never = message(
            msh("E2", extra="|||NE"), pid("M"), "OBR|1||F2|FBC^Full blood count^99LAB", obx(1, "1")
        )
        assert await exchange(server.port, framed(never), answers=0) == []
        await asyncio.sleep(0.2)
        assert "lab:LIS|LAB1|E2" in inbox.items  # stored, just not acknowledged, as asked
    finally:
        await server.close()


def _certificates(tmp_path: Path) -> dict[str, Path]:
    now = dt.datetime.now(dt.UTC)

    def make(
        name: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None, ca: bool
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer[0] if issuer else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key

    ca_cert, ca_key = make("test CA", None, True)
    paths = {}
    for name in ("server", "client"):
        cert, key = make(name, (ca_cert.subject, ca_key), False)
        paths[name] = tmp_path / f"{name}.pem"
        paths[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[f"{name}-key"] = tmp_path / f"{name}-key.pem"
        paths[f"{name}-key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    paths["ca"] = tmp_path / "ca.pem"
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return paths


async def test_tls_with_client_certificates(tmp_path):
    certs = _certificates(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(certs["server"], certs["server-key"])
    server_tls.load_verify_locations(certs["ca"])
    server_tls.verify_mode = ssl.CERT_REQUIRED
    server, inbox = await start(tmp_path, tls=server_tls)
    try:
        client = ssl.create_default_context(cafile=str(certs["ca"]))
        client.load_cert_chain(certs["client"], certs["client-key"])
        [ack] = await exchange(server.port, framed(oru("T1", "M", "F", obx(1, "1"))), tls=client)
        assert msa(ack)[1] == "AA"
        anonymous = ssl.create_default_context(cafile=str(certs["ca"]))
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            await exchange(server.port, framed(oru("T2", "M", "F", obx(1, "1"))), tls=anonymous)
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError, TimeoutError)):
            await exchange(server.port, framed(oru("T3", "M", "F", obx(1, "1"))))  # plain TCP
        assert list(inbox.items) == ["lab:LIS|LAB1|T1"]
    finally:
        await server.close()


async def test_connections_over_the_limit_are_closed_at_once(tmp_path):
    server, _ = await start(tmp_path, max_connections=1)
    try:
        first_reader, first_writer = await asyncio.open_connection("127.0.0.1", server.port)
        await asyncio.sleep(0.1)
        second_reader, second_writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(second_reader.read(10), 5) == b""
        first_writer.write(framed(oru("L1", "M", "F", obx(1, "1"))))
        frame = await asyncio.wait_for(first_reader.readuntil(EB), 5)
        assert msa(frame[1:-2])[1] == "AA"  # the first connection is served as usual
        first_writer.close()
        second_writer.close()
    finally:
        await server.close()


async def test_a_conversion_bug_gets_ae_207_and_nothing_is_stored(tmp_path, monkeypatch):
    import adapter.service.mllp as mllp

    def broken(*args: Any) -> dict[str, Any]:
        raise KeyError("Smith")  # the text must not reach the logs or the ACK

    monkeypatch.setattr(mllp, "to_bundle", broken)
    server, inbox = await start(tmp_path)
    try:
        [ack] = await exchange(server.port, framed(oru("BUG", "M", "F", obx(1, "1"))))
        assert msa(ack)[1] == "AE" and "207^" in ack.decode() and "Smith" not in ack.decode()
        assert inbox.items == {}
    finally:
        await server.close()


def test_ack_store_keeps_the_first_ack_and_drops_old_ones(tmp_path):
    store = AckStore(tmp_path / "acks.sqlite")
    assert store.put("lab", "k", b"first", "i1") == b"first"
    assert store.put("lab", "k", b"second", "i1") == b"first"
    assert store.get("lab", "k") == b"first" and store.get("adt", "k") is None
    store.close()
    assert AckStore(tmp_path / "acks.sqlite", keep_days=1).get("lab", "k") == b"first"
    assert AckStore(tmp_path / "acks.sqlite", keep_days=-1).get("lab", "k") is None
