"""The French PDF report of an evidence package (reportlab)."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from .bag import ExportInput
    from .verifier import Report

MAX_TIMELINE_ROWS = 400


def _when(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, timezone.utc).strftime("%d/%m/%Y %H:%M:%S,%f")[:-3] + " UTC"


def _table(rows: list[list[str]], widths: list[float]) -> Table:
    style = getSampleStyleSheet()["BodyText"].clone("cell", fontSize=7, leading=8.5)
    table = Table([[Paragraph(escape(str(c)), style) for c in row] for row in rows], colWidths=widths, repeatRows=1)
    table.setStyle(TableStyle([
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dde3ea")),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]))
    return table


def render_pdf(inp: "ExportInput", checked: "Report") -> bytes:
    styles = getSampleStyleSheet()
    h1, h2, body = styles["Title"], styles["Heading2"], styles["BodyText"]
    facts = checked.facts
    headers = {r.sha256: json.loads(r.header) for r in inp.records}
    log = [json.loads(item.data) for item in inp.log]
    receipts = {e["record"]["sha256"]: e for e in log if e.get("type") == "receipt"}
    notices = [e for e in log if e.get("type") == "truncation"]
    story = [
        Paragraph("Rapport de preuve — enregistrement audio Balise", h1),
        Paragraph(escape(f"Dossier {inp.case['reference']} — session {inp.case['session']} — "
                         f"généré le {inp.generated_at.strftime('%d/%m/%Y %H:%M UTC')}"), body),
        Spacer(1, 4 * mm),
        Paragraph("1. Conclusion de la vérification", h2),
    ]
    errors = [f for f in checked.findings if f.level == "error"]
    if errors:
        verdict = "Des anomalies ont été détectées à la génération : " + "; ".join(f.message for f in errors)
    elif facts.get("truncated"):
        n = notices[-1]
        verdict = (f"L'enregistrement est INTÈGRE mais TRONQUÉ : aucun enregistrement de clôture n'a été reçu. "
                   f"Le serveur a signé un avis de troncature le {n['at']} : rien n'a été reçu après le "
                   f"segment {n['last_seq']} ({n['silence_seconds']} s de silence). L'enregistrement s'arrête "
                   f"là ; il n'a pas été coupé ni modifié après coup.")
    else:
        verdict = ("L'enregistrement est INTÈGRE et COMPLET : du début (enregistrement d'ouverture) à la fin "
                   "(enregistrement de clôture, qui porte l'empreinte du flux entier), chaque segment est "
                   "signé par l'appareil, chaîné au précédent et accusé par le serveur.")
    story += [Paragraph(escape(verdict), body), Spacer(1, 3 * mm), Paragraph("2. Identification", h2)]
    story.append(_table([
        ["Élément", "Valeur"],
        ["Association", inp.case.get("association", "")],
        ["Appareil", inp.case.get("device", "")],
        ["Alerte", str(inp.case.get("alert") or "—")],
        ["Empreinte de la clé de l'appareil (ECDSA P-256)", facts.get("device_key", "")],
        ["Empreinte de la clé de signature du serveur (Ed25519)", facts.get("server_key", "")],
        ["Segments", str(facts.get("segments", 0))],
        ["Taille du flux original (octets)", str(facts.get("stream_len", 0))],
        ["SHA-256 du flux original (audio/stream.opus)", facts.get("stream_sha256", "")],
        ["État de conservation", inp.case.get("state", "")],
    ], [70 * mm, 105 * mm]))

    story += [Paragraph("3. Chronologie", h2),
              Paragraph("Horloge de l'appareil (déclarée et signée par lui) et heure de réception par le "
                        "serveur (signée par le serveur dans le reçu).", body)]
    rows = [["N°", "Type", "Horloge appareil", "Reçu par le serveur", "Durée audio", "SHA-256 de l'en-tête"]]
    ordered = sorted(headers.items(), key=lambda kv: kv[1]["seq"])
    for digest, h in ordered[:MAX_TIMELINE_ROWS]:
        duration = ""
        if h["kind"] == "segment":
            duration = f"{(h['granule_end'] - h['granule_start']) / 48000:.2f} s"
        received = receipts.get(digest, {}).get("at", "pas de reçu")
        kind = {"open": "ouverture", "segment": "segment", "close": "clôture"}[h["kind"]]
        if receipts.get(digest, {}).get("conflict"):
            kind += " (2e version, signalée)"
        rows.append([str(h["seq"]), kind, _when(h["wall_us"]), received, duration, digest[:32] + "…"])
    for n in notices:
        rows.append(["—", "avis de troncature", "—", n["at"], "", f"après le segment {n['last_seq']}"])
    story.append(_table(rows, [10 * mm, 28 * mm, 38 * mm, 42 * mm, 17 * mm, 45 * mm]))
    if len(ordered) > MAX_TIMELINE_ROWS:
        story.append(Paragraph(f"… {len(ordered) - MAX_TIMELINE_ROWS} lignes de plus dans data/records.", body))

    story += [Paragraph("4. Complétude", h2), Paragraph(escape(_completeness(facts, checked)), body),
              Paragraph("5. Traçabilité (chaîne de possession)", h2)]
    rows = [["N°", "Date", "Action", "Par", "Motif", "Référence légale"]]
    for item in inp.custody:
        c = json.loads(item.data)
        actor = c.get("actor", {})
        rows.append([str(c["index"]), c["at"], c["action"], f"{actor.get('kind', '')} {actor.get('name', '')}",
                     c.get("reason", ""), c.get("legal_reference", "")])
    story.append(_table(rows, [10 * mm, 38 * mm, 25 * mm, 35 * mm, 40 * mm, 32 * mm]))

    story += [Paragraph("6. Ce que la preuve établit", h2)]
    for line in (
        "Que le flux audio audio/stream.opus est, octet pour octet, celui que l'appareil identifié par sa clé a "
        "enregistré et signé, segment par segment, dans cet ordre, sans ajout, retrait ni modification.",
        "Que le serveur a reçu chaque segment à l'heure indiquée dans son reçu signé, et l'a conservé chiffré.",
        "Que l'enregistrement est complet (clôture signée) ou, sinon, où et quand il a été interrompu (avis de "
        "troncature signé par le serveur).",
        "Qui a accédé à l'enregistrement, quand, pourquoi et sur quelle base légale (traçabilité chaînée).",
    ):
        story.append(Paragraph("• " + escape(line), body))
    story += [Paragraph("7. Ce que la preuve n'établit pas", h2)]
    for line in (
        "L'identité des personnes dont la voix est entendue, ni le sens de leurs propos.",
        "L'exactitude de l'horloge de l'appareil : seules les heures de réception signées par le serveur (et les "
        "horodatages RFC 3161, s'il y en a) sont attestées par un tiers.",
        "Ce qui s'est passé hors de portée du microphone, avant le début ou après la fin de l'enregistrement.",
        "Que l'appareil n'a pas été manipulé avant l'enregistrement : la preuve part de sa clé.",
        "Le fichier audio/DERIVE-stream.wav est dérivé (décodé pour l'écoute) : il n'est pas l'original.",
    ):
        story.append(Paragraph("• " + escape(line), body))
    story += [Paragraph("8. Clés de la plateforme (journal des clés)", h2),
              Paragraph(escape(
                  "Les empreintes ci-dessous sont celles du journal des clés de la plateforme, signé et en ajout "
                  "seul, tel qu'il était à l'export. Elles ne valent que si elles sont identiques à celles que "
                  "l'association publie hors du paquet : l'expert les obtient d'elle (adresse ci-dessous, et "
                  "empreinte de la première clé de signature communiquée par un autre canal), jamais de ce seul "
                  "document. Adresse du journal : " + (inp.key_log_url or "non configurée")), body)]
    rows = [["N°", "Rôle", "Empreinte SHA-256", "Depuis"]]
    head = ""
    if inp.key_log:
        for item in json.loads(inp.key_log).get("entries", []):
            e = json.loads(item["data"])
            head = hashlib.sha256(item["data"].encode()).hexdigest()
            if e.get("role") == "device" and e.get("fingerprint") != facts.get("device_key"):
                continue  # other devices' keys: in the published log, not in this case's report
            rows.append([str(e.get("index")), {"signing": "signature serveur", "export": "export",
                                               "seal": "scellement", "device": "appareil"}.get(e.get("role"), ""),
                         e.get("fingerprint", ""), e.get("at", "")])
    story.append(_table(rows, [10 * mm, 30 * mm, 100 * mm, 35 * mm]))
    if head:
        story.append(Paragraph(escape(f"Tête du journal des clés (SHA-256 de la dernière entrée) : {head}"), body))
    story += [Paragraph("9. Vérifier", h2),
              Paragraph(escape(
                  "Voir data/LISEZMOI.txt. Le vérificateur (verify_balise.py, verifier_openssl.sh) s'obtient dans "
                  "la publication officielle du projet Balise, dont on contrôle l'empreinte : aucun programme "
                  "n'est livré dans le paquet, et il ne faut jamais exécuter un programme venu avec une preuve."),
                  body)]
    buf = io.BytesIO()
    SimpleDocTemplate(buf, pagesize=A4, title=f"Rapport de preuve {inp.case['reference']}", author="Balise",
                      leftMargin=15 * mm, rightMargin=15 * mm, topMargin=15 * mm, bottomMargin=15 * mm,
                      ).build(story)
    return buf.getvalue()


def _completeness(facts: dict, checked: "Report") -> str:
    conflicts = [f for f in checked.findings if f.code == "record.conflict"]
    parts = []
    if facts.get("closed"):
        parts.append(f"Enregistrement de clôture présent : {facts.get('segments', 0)} segments annoncés et "
                     f"présents, empreinte du flux entier conforme.")
    elif facts.get("truncated"):
        parts.append("Pas d'enregistrement de clôture : l'enregistrement a été interrompu (appareil détruit, "
                     "éteint ou hors réseau). L'avis de troncature signé par le serveur en fait foi.")
    else:
        parts.append("Pas d'enregistrement de clôture ni d'avis de troncature à la date de l'export "
                     "(enregistrement en cours ?).")
    parts.append("Chaque segment porte l'empreinte du précédent : un segment retiré, inséré ou déplacé "
                 "briserait la chaîne.")
    if conflicts:
        parts.append(f"{len(conflicts)} version(s) concurrente(s) d'un segment déjà reçu : conservée(s) et "
                     f"signalée(s), jamais substituée(s).")
    return " ".join(parts)
