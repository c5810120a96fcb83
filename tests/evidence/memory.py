"""An in-memory receiving side built from the pure modules, for tests that need no Django."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from balise_evidence import bag, crypto, intake, ledger
from balise_evidence.records import SealedUpload

T0 = datetime(2026, 11, 24, 18, 0, tzinfo=timezone.utc)


@dataclass
class MemoryServer:
    device: crypto.DeviceKey
    seal: crypto.SealKey = field(default_factory=crypto.SealKey.generate)
    signer: crypto.Signer = field(default_factory=crypto.Signer.generate)
    exporter: crypto.Signer = field(default_factory=crypto.Signer.generate)
    known: intake.Known = field(default_factory=intake.Known)
    stored: list[bag.StoredRecord] = field(default_factory=list)
    ciphertexts: dict[str, bytes] = field(default_factory=dict)
    log: list[ledger.Entry] = field(default_factory=list)
    custody: list[ledger.Entry] = field(default_factory=list)
    now: datetime = T0

    def __post_init__(self) -> None:
        self.known.ciphertext_of = self.ciphertexts.__getitem__

    def tick(self, seconds: float = 1.0) -> str:
        self.now += timedelta(seconds=seconds)
        return self.now.isoformat()

    def head(self, entries) -> ledger.Head:
        return ledger.Head(entries[-1].body["index"], entries[-1].sha256) if entries else ledger.Head()

    def receive(self, upload: SealedUpload | dict) -> ledger.Entry:
        body = upload.to_json() if isinstance(upload, SealedUpload) else upload
        v = intake.check(body, device_public_key=self.device.private_key.public_key(), seal_key=self.seal,
                         known=self.known, max_cipher_bytes=64 * 1024)
        if v.duplicate:
            return next(e for e in self.log if e.body.get("record", {}).get("sha256") == v.sha256)
        self.known.records[v.sha256] = v.header
        if v.ciphertext is not None:
            self.ciphertexts[v.sha256] = v.ciphertext
        self.stored.append(bag.StoredRecord(v.header["seq"], v.header["kind"], v.header_bytes, v.signature,
                                            v.sha256, v.ciphertext, v.conflict))
        entry = ledger.append(self.head(self.log), ledger.receipt_body(
            session=v.header["session"], at=self.tick(), header=v.header, header_sha256=v.sha256,
            conflict=v.conflict), self.signer)
        self.log.append(entry)
        return entry

    def truncate(self, silence: int = 600) -> ledger.Entry:
        last = max(self.known.records.items(), key=lambda kv: kv[1]["seq"])
        entry = ledger.append(self.head(self.log), ledger.truncation_body(
            session=last[1]["session"], at=self.tick(silence), last_seq=last[1]["seq"],
            last_record_sha256=last[0], last_received_at=self.log[-1].body["at"], silence_seconds=silence),
            self.signer)
        self.log.append(entry)
        return entry

    def access(self, action: str) -> None:
        self.custody.append(ledger.append(self.head(self.custody), ledger.custody_body(
            case="TEST-1", at=self.tick(), actor={"kind": "staff", "id": 1, "name": "Juriste"}, action=action,
            reason="réquisition", legal_reference="PV 2026/123"), self.signer))

    @property
    def trusted(self) -> set[str]:
        """The fingerprints an expert obtains from the platform, out of band."""
        return {self.device.fingerprint, self.signer.fingerprint, self.exporter.fingerprint}

    def stream(self) -> bytes:
        last = max(self.known.records.items(), key=lambda kv: (kv[1]["seq"], kv[1]["kind"] == "close"))[0]
        return b"".join(audio for _h, audio in intake.chain_audio(self.known, last, self.seal))

    def export_input(self, timestamps=()) -> bag.ExportInput:
        opened = self.known.open_header
        return bag.ExportInput(
            case={"reference": "TEST-1", "session": opened["session"], "association": "Association test",
                  "device": "station de test", "alert": opened["alert"], "state": "scellé"},
            records=self.stored,
            stream=self.stream(),
            log=[bag.Signed(e.data, e.signature) for e in self.log],
            custody=[bag.Signed(e.data, e.signature) for e in self.custody],
            keys={"device.pem": self.device.public_pem, f"signing/{self.signer.fingerprint}.pem": self.signer.public_pem,
                  "server-seal.pem": self.seal.public_pem, "export.pem": self.exporter.public_pem},
            timestamps=list(timestamps),
            generated_at=self.now,
        )
