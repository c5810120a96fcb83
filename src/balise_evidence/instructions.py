"""Verification instructions (French, English) and the openssl/sha256sum script."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .bag import ExportInput
    from .verifier import Report


def _facts(inp: "ExportInput", facts: "Report") -> dict:
    f = facts.facts
    return {
        "reference": inp.case["reference"],
        "session": inp.case["session"],
        "segments": f.get("segments", 0),
        "stream_sha256": f.get("stream_sha256", ""),
        "device_key": f.get("device_key", ""),
        "server_key": f.get("server_key", ""),
        "state_fr": "TRONQUÉ (avis de troncature signé par le serveur)" if f.get("truncated")
        else ("complet (enregistrement de clôture présent)" if f.get("closed") else "INCOMPLET"),
        "state_en": "TRUNCATED (server-signed truncation notice)" if f.get("truncated")
        else ("complete (close record present)" if f.get("closed") else "INCOMPLETE"),
    }


def french(inp: "ExportInput", facts: "Report") -> str:
    v = _facts(inp, facts)
    return f"""PAQUET DE PREUVE BALISE — INSTRUCTIONS DE VÉRIFICATION
Dossier {v['reference']} — session {v['session']}
État à l'export : {v['state_fr']} — {v['segments']} segments
SHA-256 du flux audio original : {v['stream_sha256']}
Empreinte de la clé de l'appareil : {v['device_key']}
Empreinte de la clé de signature du serveur : {v['server_key']}

Ce paquet est un « bag » BagIt (RFC 8493). Toutes les commandes se lancent depuis le
dossier racine du paquet décompressé (celui qui contient bagit.txt).

1. Vérification automatique (Python 3 et le paquet « cryptography ») :
     python3 data/verify_balise.py .
   Le verdict s'affiche en première ligne : INTÈGRE ET COMPLET, INTÈGRE MAIS TRONQUÉ ou
   ALTÉRÉ OU INVALIDE, suivi de chaque problème nommé.

2. Les mêmes contrôles avec sha256sum et openssl seulement :
     sh data/verifier_openssl.sh
   ou, pas à pas :
   a. Intégrité des fichiers :
        sha256sum -c manifest-sha256.txt && sha256sum -c tagmanifest-sha256.txt
   b. Signature de l'export (clé Ed25519 de la plateforme) :
        openssl pkeyutl -verify -pubin -inkey data/keys/export.pem -rawin \\
          -in tagmanifest-sha256.txt -sigfile tagmanifest-sha256.txt.sig
      puis comparer l'empreinte de la clé à celle publiée par la plateforme :
        openssl pkey -pubin -in data/keys/export.pem -outform DER | sha256sum
   c. Signature de chaque enregistrement par l'appareil (ECDSA P-256) :
        openssl dgst -sha256 -verify data/keys/device.pem \\
          -signature data/records/000001-segment.sig data/records/000001-segment.json
   d. Chaînage : le champ "prev" de chaque enregistrement est le SHA-256 de
      l'enregistrement précédent :  sha256sum data/records/000000-open.json
   e. Reçus et journal du serveur (Ed25519), y compris l'avis de troncature éventuel :
        openssl pkeyutl -verify -pubin -inkey data/keys/server-signing.pem -rawin \\
          -in data/log/000000.json -sigfile data/log/000000.sig
   f. Audio : le SHA-256 du flux entier figure dans l'enregistrement de clôture :
        sha256sum data/audio/stream.opus
      et chaque segment (décalage et longueur dans data/segments.tsv) :
        tail -c +$((DECALAGE+1)) data/audio/stream.opus | head -c LONGUEUR | sha256sum
   g. Horodatages RFC 3161 (si présents) :
        openssl ts -verify -data manifest-sha256.txt -in timestamps/export.tsr \\
          -CAfile data/keys/tsa-ca.pem -untrusted data/keys/tsa.pem

Le fichier data/audio/DERIVE-stream.wav est DÉRIVÉ : décodé depuis stream.opus pour
l'écoute. Seul stream.opus est l'enregistrement original, et lui seul est couvert par
les signatures de l'appareil. Le rapport data/rapport.pdf explique ce que la preuve
établit et ce qu'elle n'établit pas.
"""


def english(inp: "ExportInput", facts: "Report") -> str:
    v = _facts(inp, facts)
    return f"""BALISE EVIDENCE PACKAGE — HOW TO VERIFY
Case {v['reference']} — session {v['session']}
State at export: {v['state_en']} — {v['segments']} segments
SHA-256 of the original audio stream: {v['stream_sha256']}
Device key fingerprint: {v['device_key']}
Server signing key fingerprint: {v['server_key']}

This package is a BagIt bag (RFC 8493). Run every command from the root folder of the
unzipped package (the one holding bagit.txt).

1. Automatic check (Python 3 and the "cryptography" package):
     python3 data/verify_balise.py .
   The first line is the verdict: INTACT AND COMPLETE, INTACT BUT TRUNCATED or ALTERED OR
   INVALID, followed by every problem found, by name.

2. The same checks with sha256sum and openssl only:
     sh data/verifier_openssl.sh
   or step by step:
   a. File integrity:
        sha256sum -c manifest-sha256.txt && sha256sum -c tagmanifest-sha256.txt
   b. Export signature (the platform's Ed25519 key):
        openssl pkeyutl -verify -pubin -inkey data/keys/export.pem -rawin \\
          -in tagmanifest-sha256.txt -sigfile tagmanifest-sha256.txt.sig
      then compare the key's fingerprint with the one the platform publishes:
        openssl pkey -pubin -in data/keys/export.pem -outform DER | sha256sum
   c. Each record's device signature (ECDSA P-256):
        openssl dgst -sha256 -verify data/keys/device.pem \\
          -signature data/records/000001-segment.sig data/records/000001-segment.json
   d. Chaining: each record's "prev" field is the SHA-256 of the previous record:
        sha256sum data/records/000000-open.json
   e. Server receipts and log (Ed25519), including any truncation notice:
        openssl pkeyutl -verify -pubin -inkey data/keys/server-signing.pem -rawin \\
          -in data/log/000000.json -sigfile data/log/000000.sig
   f. Audio: the SHA-256 of the whole stream is in the close record:
        sha256sum data/audio/stream.opus
      and each segment (offset and length in data/segments.tsv):
        tail -c +$((OFFSET+1)) data/audio/stream.opus | head -c LENGTH | sha256sum
   g. RFC 3161 timestamps (if present):
        openssl ts -verify -data manifest-sha256.txt -in timestamps/export.tsr \\
          -CAfile data/keys/tsa-ca.pem -untrusted data/keys/tsa.pem

data/audio/DERIVE-stream.wav is DERIVED: decoded from stream.opus for listening. Only
stream.opus is the original recording, and only it is covered by the device signatures.
The report data/rapport.pdf (French) says what the evidence proves and what it does not.
"""


def openssl_script() -> str:
    """A POSIX shell script doing the checks with sha256sum, openssl, grep, sed, head, tail."""
    return r"""#!/bin/sh
# Balise: verify this package with sha256sum and openssl only. Run from the bag root.
# Vérifie ce paquet avec sha256sum et openssl seulement. À lancer depuis la racine du bag.
fail=0
no() { echo "ÉCHEC / FAILED: $*"; fail=1; }
field() { sed -n "s/.*\"$2\":\"\{0,1\}\([^\",}]*\)\"\{0,1\}.*/\1/p" "$1"; }
sha256sum --quiet -c manifest-sha256.txt || no "manifest-sha256.txt"
sha256sum --quiet -c tagmanifest-sha256.txt || no "tagmanifest-sha256.txt"
openssl pkeyutl -verify -pubin -inkey data/keys/export.pem -rawin -in tagmanifest-sha256.txt \
  -sigfile tagmanifest-sha256.txt.sig >/dev/null 2>&1 || no "export signature"
prev=0000000000000000000000000000000000000000000000000000000000000000
for f in data/records/*.json; do
  openssl dgst -sha256 -verify data/keys/device.pem -signature "${f%.json}.sig" "$f" >/dev/null 2>&1 \
    || no "device signature $f"
  case "$f" in *-v[0-9]*.json) continue;; esac
  [ "$(field "$f" prev)" = "$prev" ] || no "chain at $f"
  prev=$(sha256sum "$f" | cut -d' ' -f1)
  if [ "$(field "$f" kind)" = segment ]; then
    off=$(field "$f" offset); len=$(field "$f" audio_len)
    got=$(tail -c +$((off + 1)) data/audio/stream.opus | head -c "$len" | sha256sum | cut -d' ' -f1)
    [ "$got" = "$(field "$f" audio_sha256)" ] || no "audio of $f"
  fi
  if [ "$(field "$f" kind)" = close ]; then
    [ "$(sha256sum data/audio/stream.opus | cut -d' ' -f1)" = "$(field "$f" stream_sha256)" ] || no "stream hash"
  fi
done
for f in data/log/*.json data/custody/*.json; do
  [ -f "$f" ] || continue
  openssl pkeyutl -verify -pubin -inkey data/keys/server-signing.pem -rawin -in "$f" \
    -sigfile "${f%.json}.sig" >/dev/null 2>&1 || no "server signature $f"
done
for d in data/log data/custody; do
  prev=0000000000000000000000000000000000000000000000000000000000000000
  for f in "$d"/*.json; do
    [ -f "$f" ] || continue
    [ "$(field "$f" prev)" = "$prev" ] || no "chain at $f"
    prev=$(sha256sum "$f" | cut -d' ' -f1)
  done
done
for t in timestamps/*.tsr data/timestamps/*.tsr; do
  [ -f "$t" ] || continue
  subject=$(cat "${t%.tsr}.subject")
  openssl ts -verify -data "$subject" -in "$t" -CAfile data/keys/tsa-ca.pem -untrusted data/keys/tsa.pem \
    >/dev/null 2>&1 || no "timestamp $t"
done
if ! ls data/records/*-close.json >/dev/null 2>&1; then
  grep -l '"type":"truncation"' data/log/*.json >/dev/null 2>&1 \
    && echo "TRONQUÉ / TRUNCATED: see the truncation notice in data/log" || no "no close record, no notice"
fi
[ $fail = 0 ] && echo "OK" || exit 1
"""
