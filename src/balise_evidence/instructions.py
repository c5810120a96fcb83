"""Verification instructions (French, English). The verifiers themselves
(``verifier.py`` published as verify_balise.py, ``verifier_openssl.sh``) are not in the
package: the expert obtains them, and the fingerprints, independently."""

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
        "key_log_url": inp.key_log_url or "(non configurée / not configured)",
        "state_fr": "TRONQUÉ (avis de troncature signé par le serveur)" if f.get("truncated")
        else ("complet (enregistrement de clôture présent)" if f.get("closed") else "INCOMPLET"),
        "state_en": "TRUNCATED (server-signed truncation notice)" if f.get("truncated")
        else ("complete (close record present)" if f.get("closed") else "INCOMPLETE"),
    }


def french(inp: "ExportInput", facts: "Report") -> str:
    v = _facts(inp, facts)
    return f"""PAQUET DE PREUVE BALISE — INSTRUCTIONS DE VÉRIFICATION
Dossier {v['reference']} — session {v['session']}
État déclaré à l'export : {v['state_fr']} — {v['segments']} segments
SHA-256 du flux audio original : {v['stream_sha256']}

Ce paquet est un « bag » BagIt 1.0 (RFC 8493). Ne vous fiez à rien de ce qu'il contient
pour décider de lui faire confiance : tout ce qui y figure, y compris ce texte, peut avoir
été remplacé avec lui. En particulier :

A. N'exécutez aucun programme venu avec une preuve. Procurez-vous le vérificateur
   (verify_balise.py et verifier_openssl.sh) dans la publication officielle du projet
   Balise, et contrôlez l'empreinte SHA-256 de ce que vous avez téléchargé avec celle
   que publie le projet.

B. Obtenez les empreintes de confiance de l'association, hors du paquet :
   - l'adresse de son journal des clés (actuellement : {v['key_log_url']}) ;
   - l'empreinte de la première clé de signature de ce journal (« --pin »), communiquée
     par un autre canal (courrier, réquisition, site de l'association) ;
   - l'autorité d'horodatage (RFC 3161) qu'elle utilise et son certificat racine, obtenu
     auprès de l'autorité elle-même.
   Les empreintes imprimées dans rapport.pdf ne servent qu'à comparer.

C. Vérification automatique (Python 3 et le paquet « cryptography ») :
     python3 verify_balise.py PAQUET.zip --trust-url URL_DU_JOURNAL --pin EMPREINTE \
       --tsa-root RACINE_TSA.pem
   (ou --trust-log FICHIER si vous avez une copie du journal obtenue de l'association).
   Si l'association déclare n'utiliser aucune autorité d'horodatage, omettez --tsa-root :
   le paquet ne prouve alors rien sur la date de l'enregistrement.
   Verdicts : INTÈGRE ET COMPLET, INTÈGRE MAIS TRONQUÉ, ALTÉRÉ OU INVALIDE (chaque
   problème nommé), NON ANCRÉ (aucune ancre de confiance fournie : le paquet n'est alors
   cohérent qu'avec lui-même, ce qui ne prouve rien).

D. Les mêmes contrôles avec sha256sum et openssl seulement, les empreintes en entrée :
     sh verifier_openssl.sh DOSSIER_DU_PAQUET --export EMPREINTE --signing EMPREINTE \
       --device EMPREINTE --tsa-root RACINE_TSA.pem
   (--signing autant de fois que le journal des clés en liste). Le script dit à la fin ce
   qu'il ne peut pas vérifier.

Le fichier data/audio/DERIVE-stream.wav est DÉRIVÉ : décodé depuis stream.opus pour
l'écoute. Seul stream.opus est l'enregistrement original, couvert par les signatures de
l'appareil. Les décalages des segments sont dans les en-têtes signés (data/records) ;
data/segments.tsv n'en est qu'une copie commode, non signée. Le rapport data/rapport.pdf
explique ce que la preuve établit et ce qu'elle n'établit pas.
"""


def english(inp: "ExportInput", facts: "Report") -> str:
    v = _facts(inp, facts)
    return f"""BALISE EVIDENCE PACKAGE — HOW TO VERIFY
Case {v['reference']} — session {v['session']}
State declared at export: {v['state_en']} — {v['segments']} segments
SHA-256 of the original audio stream: {v['stream_sha256']}

This package is a BagIt 1.0 bag (RFC 8493). Rely on nothing it contains to decide whether
to trust it: everything in it, this text included, can have been replaced along with it.

A. Never run a program that came with evidence. Obtain the verifier (verify_balise.py and
   verifier_openssl.sh) from the Balise project's published release, and check the
   SHA-256 of what you downloaded against the one the project publishes.

B. Obtain the trust anchors from the association, outside the package:
   - the address of its key log (currently: {v['key_log_url']});
   - the fingerprint of the key log's first signing key ("--pin"), through another channel
     (letter, warrant, the association's site);
   - the RFC 3161 timestamp authority it uses, and that authority's root certificate,
     obtained from the authority itself.
   The fingerprints printed in rapport.pdf are only for comparison.

C. Automatic check (Python 3 and the "cryptography" package):
     python3 verify_balise.py PACKAGE.zip --trust-url KEY_LOG_URL --pin FINGERPRINT \
       --tsa-root TSA_ROOT.pem
   (or --trust-log FILE with a copy of the key log obtained from the association).
   If the association says it uses no timestamp authority, leave out --tsa-root: the
   package then proves nothing about when it was recorded.
   Verdicts: INTACT AND COMPLETE, INTACT BUT TRUNCATED, ALTERED OR INVALID (every problem
   named), NOT ANCHORED (no trust anchor given: the package is then only consistent with
   itself, which proves nothing).

D. The same checks with sha256sum and openssl only, the fingerprints as inputs:
     sh verifier_openssl.sh PACKAGE_FOLDER --export FINGERPRINT --signing FINGERPRINT \
       --device FINGERPRINT --tsa-root TSA_ROOT.pem
   (--signing as many times as the key log lists signing keys). The script ends by saying
   what it cannot check.

data/audio/DERIVE-stream.wav is DERIVED: decoded from stream.opus for listening. Only
stream.opus is the original recording, covered by the device signatures. Segment offsets
are in the signed headers (data/records); data/segments.tsv is an unsigned convenience
copy. The report data/rapport.pdf (French) says what the evidence proves and what not.
"""
