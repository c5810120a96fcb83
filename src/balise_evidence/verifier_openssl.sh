#!/bin/sh
# Balise: verify an evidence package with sha256sum, openssl and POSIX tools only.
# Vérifie un paquet de preuve Balise avec sha256sum, openssl et les outils POSIX seulement.
#
# Obtain this script from the project's published release (check its hash), never from
# inside a package. The fingerprints come from the association, out of band (its key log).
#
#   sh verifier_openssl.sh BAG_DIR --export FP --signing FP [--signing FP ...] --device FP [--tsa-root CA.pem]
#
# Exit: 0 intact and complete, 3 intact but truncated, 1 altered or invalid,
#       2 unusable arguments, 4 not anchored (a fingerprint is missing).
set -u
LC_ALL=C; export LC_ALL
root=""; export_fp=""; signing=" "; device_fp=""; tsa_root=""
while [ $# -gt 0 ]; do
  case "$1" in
    --export) export_fp=$2; shift 2;;
    --signing) signing="$signing$2 "; shift 2;;
    --device) device_fp=$2; shift 2;;
    --tsa-root) tsa_root=$2; shift 2;;
    -*) echo "unknown option $1" >&2; exit 2;;
    *) root=$1; shift;;
  esac 2>/dev/null || { echo "option $1 needs a value" >&2; exit 2; }
done
[ -n "$root" ] && [ -f "$root/bagit.txt" ] || { echo "usage: sh verifier_openssl.sh BAG_DIR --export FP --signing FP --device FP [--tsa-root CA.pem]" >&2; exit 2; }
if [ -z "$export_fp" ] || [ "$signing" = " " ] || [ -z "$device_fp" ]; then
  echo "NON ANCRÉ / NOT ANCHORED: give the export, server signing and device fingerprints the platform published (--export, --signing, --device)"
  exit 4
fi
case "$tsa_root" in ""|/*) ;; *) tsa_root="$PWD/$tsa_root";; esac
cd "$root" || exit 2
fail=0
no() { echo "ÉCHEC / FAILED: $*"; fail=1; }
field() { sed -n "s/.*\"$2\":\"\{0,1\}\([^\",}]*\)\"\{0,1\}.*/\1/p" "$1"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
fp() { openssl pkey -pubin -in "$1" -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1; }
size() { wc -c < "$1" | tr -d ' '; }
ZERO=0000000000000000000000000000000000000000000000000000000000000000

# 1. Files: every payload file listed, every listed file intact; the export signature.
sha256sum --quiet -c manifest-sha256.txt >/dev/null 2>&1 || no "manifest-sha256.txt (a payload file differs or is missing)"
sha256sum --quiet -c tagmanifest-sha256.txt >/dev/null 2>&1 || no "tagmanifest-sha256.txt"
find data -type f | while read -r f; do grep -q "  $f\$" manifest-sha256.txt || echo "$f"; done > .unlisted.$$
[ -s .unlisted.$$ ] && no "files not in manifest-sha256.txt: $(tr '\n' ' ' < .unlisted.$$)"; rm -f .unlisted.$$
[ "$(fp data/keys/export.pem)" = "$export_fp" ] || no "export key: data/keys/export.pem is not the published export key"
openssl pkeyutl -verify -pubin -inkey data/keys/export.pem -rawin -in tagmanifest-sha256.txt \
  -sigfile tagmanifest-sha256.txt.sig >/dev/null 2>&1 || no "export signature"
[ "$(fp data/keys/device.pem)" = "$device_fp" ] || no "device key: data/keys/device.pem is not the published device key"

# 2. Server-signed entries (log: receipts, truncation notices; custody): each signed by
#    the signing key it names, which must be a published one; hash-chained.
for d in data/log data/custody; do
  prev=$ZERO; i=0
  for f in "$d"/*.json; do
    [ -f "$f" ] || continue
    signer=$(field "$f" signer)
    case "$signing" in *" $signer "*) ;; *) no "$f is signed by $signer, not a published signing key";; esac
    key=data/keys/signing/$signer.pem
    if [ -f "$key" ] && [ "$(fp "$key")" = "$signer" ]; then
      openssl pkeyutl -verify -pubin -inkey "$key" -rawin -in "$f" -sigfile "${f%.json}.sig" >/dev/null 2>&1 \
        || no "server signature $f"
    else
      no "server signature $f (no key $key)"
    fi
    [ "$(field "$f" prev)" = "$prev" ] && [ "$(field "$f" index)" = "$i" ] || no "chain at $f"
    prev=$(sha "$f"); i=$((i + 1))
  done
done

# 3. Records: device signature, the server's receipt for exactly these bytes (checked
#    with the published device key), the chain, offsets, audio, ciphertexts, the close.
receipt() { grep -l "\"sha256\":\"$1\"" data/log/*.json 2>/dev/null | head -n 1; }
prev=$ZERO; seq=0; offset=0; segments=0; last=""; closed=0
for f in data/records/*.json; do
  [ -f "$f" ] || continue
  openssl dgst -sha256 -verify data/keys/device.pem -signature "${f%.json}.sig" "$f" >/dev/null 2>&1 \
    || no "device signature $f"
  h=$(sha "$f"); r=$(receipt "$h")
  if [ -z "$r" ] || [ "$(field "$r" type)" != receipt ]; then
    no "no server receipt for $f"
  elif [ "$(field "$r" device_key)" != "$device_fp" ]; then
    no "the receipt $r for $f names another device key"
  fi
  case "$f" in *-v[0-9]*.json)
    [ -n "$r" ] && grep -q '"conflict":true' "$r" || no "$f: a second version the server did not flag (inserted)"
    continue;;
  esac
  [ "$(field "$f" seq)" = "$seq" ] && [ "$(basename "$f" | cut -c1-6)" = "$(printf %06d "$seq")" ] \
    || no "$f is not the record of seq $seq (missing, reordered or inserted)"
  [ "$(field "$f" prev)" = "$prev" ] || no "chain at $f"
  prev=$h; last=$h; seq=$((seq + 1))
  case "$(field "$f" kind)" in
    segment)
      segments=$((segments + 1))
      off=$(field "$f" offset); len=$(field "$f" audio_len)
      [ "$off" = "$offset" ] || no "offset of $f ($off, expected $offset)"
      got=$(tail -c +$((off + 1)) data/audio/stream.opus | head -c "$len" | sha256sum | cut -d' ' -f1)
      [ "$got" = "$(field "$f" audio_sha256)" ] || no "audio of $f"
      offset=$((off + len))
      c=data/ciphertext/$(basename "$f" | cut -c1-6).bin
      if [ ! -f "$c" ]; then no "ciphertext of $f is missing"
      else
        [ "$(size "$c")" = "$(field "$f" cipher_len)" ] && [ "$(sha "$c")" = "$(field "$f" cipher_sha256)" ] \
          || no "ciphertext of $f"
        [ "$(field "$r" cipher_sha256)" = "$(field "$f" cipher_sha256)" ] || no "the receipt of $f names another ciphertext"
      fi;;
    close)
      closed=1
      [ "$(sha data/audio/stream.opus)" = "$(field "$f" stream_sha256)" ] || no "stream hash"
      [ "$(size data/audio/stream.opus)" = "$(field "$f" stream_len)" ] || no "stream length"
      [ "$(field "$f" segments)" = "$segments" ] || no "the close record counts $(field "$f" segments) segments, the chain has $segments";;
  esac
done
[ "$(size data/audio/stream.opus)" = "$offset" ] || no "stream.opus has bytes no signed segment covers"

# 4. Complete, or truncated under a notice signed by a published key for this very record.
truncated=0
if [ $closed = 0 ]; then
  n=$(grep -l '"type":"truncation"' data/log/*.json 2>/dev/null | while read -r t; do
        [ "$(field "$t" last_record_sha256)" = "$last" ] && echo "$t"; done | tail -n 1)
  if [ -n "$n" ]; then truncated=1; echo "TRONQUÉ / TRUNCATED: $n, signed by $(field "$n" signer): nothing after seq $(field "$n" last_seq)"
  else no "no close record, and no truncation notice for the last record"; fi
fi

# 5. RFC 3161 tokens, against the authority root the expert supplies.
if [ -n "$tsa_root" ]; then
  stamped=" "
  for t in timestamps/*.tsr data/timestamps/*.tsr; do
    [ -f "$t" ] || continue
    subject=$(cat "${t%.tsr}.subject")
    case "$subject" in manifest-sha256.txt|data/log/[0-9][0-9][0-9][0-9][0-9][0-9].json) ;; *) no "timestamp $t names $subject"; continue;; esac
    if openssl ts -verify -data "$subject" -in "$t" -CAfile "$tsa_root" >/dev/null 2>&1; then
      stamped="$stamped$subject "
      echo "horodatage / timestamp: $subject existed by $(openssl ts -reply -in "$t" -text 2>/dev/null | sed -n 's/^Time stamp: //p')"
    else no "timestamp $t"; fi
  done
  case "$stamped" in *" manifest-sha256.txt "*) ;; *) no "no valid timestamp on the export";; esac
  lastlog=$(ls data/log/*.json 2>/dev/null | tail -n 1)
  case "$stamped" in *" $lastlog "*) ;; *) no "no valid timestamp on the last log entry $lastlog";; esac
else
  echo "NON VÉRIFIÉ / NOT CHECKED: RFC 3161 tokens (give --tsa-root, the authority's root obtained out of band)"
fi

echo "NON VÉRIFIÉ PAR CE SCRIPT / NOT CHECKED BY THIS SCRIPT (use verify_balise.py from the release):"
echo "  - the platform's key log itself (its signature chain back to the pinned key): here the fingerprints are taken as given"
echo "  - the canonical (RFC 8785) form and the full shape of each header"
echo "  - DERIVE-stream.wav against stream.opus (needs an Opus decoder)"
echo "  - the audio inside the ciphertexts (only the server's seal key opens them; their hashes are checked)"
if [ $fail != 0 ]; then echo "ALTÉRÉ OU INVALIDE / ALTERED OR INVALID"; exit 1; fi
if [ $truncated = 1 ]; then echo "INTÈGRE MAIS TRONQUÉ / INTACT BUT TRUNCATED"; exit 3; fi
echo "INTÈGRE ET COMPLET / INTACT AND COMPLETE"
exit 0
