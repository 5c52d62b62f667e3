"""A holder statement as PDF (fpdf2, pure Python): the same statement object, the same
summary and lines as the HTML and CSV downloads and `tributary statement`."""

from __future__ import annotations

from pathlib import Path

from fpdf import FPDF

from tributary.money import format_micros
from tributary.reports import Statement, statement_summary

# a Unicode font where the system has one (titles and names in any script); else the
# PDF core font, with characters it cannot show replaced
FONT_FILES = (Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
              Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"))


def statement_pdf(st: Statement) -> bytes:
    pdf = FPDF(orientation="L", format="A4")
    pdf.set_title(f"Statement {st.holder_id} {st.currency}")
    pdf.set_author("tributary")
    unicode_font = all(p.exists() for p in FONT_FILES)
    if unicode_font:
        pdf.add_font("body", "", str(FONT_FILES[0]))
        pdf.add_font("body", "B", str(FONT_FILES[1]))
        family = "body"
    else:
        family = "Helvetica"

    def text(value: object) -> str:
        s = str(value)
        return s if unicode_font else s.encode("latin-1", "replace").decode("latin-1")

    pdf.add_page()
    pdf.set_font(family, "B", 15)
    pdf.cell(0, 9, text(f"Statement for {st.name or st.holder_id} ({st.holder_id})"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, "", 10)
    pdf.cell(0, 6, text(f"Period: {st.since or 'the beginning'} to {st.until or 'today'} - amounts in {st.currency}, "
                        "exact to the micro-unit"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    for label, amount in statement_summary(st):
        pdf.cell(90, 6, text(label))
        pdf.cell(50, 6, text(format_micros(amount, st.currency)), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    widths = (24, 26, 150, 52, 24)
    pdf.set_font(family, "B", 9)
    for w, head in zip(widths, ("Day", "Kind", "Description", "Reference", "Amount"), strict=True):
        pdf.cell(w, 6, head, border="B")
    pdf.ln()
    pdf.set_font(family, "", 8)
    for line in st.lines:
        shown = format_micros(line["amount_micros"], st.currency).removesuffix(f" {st.currency}")
        cells = (line["day"], line["kind"], line["description"][:110], line["reference"], shown)
        for w, value, align in zip(widths, cells, ("L", "L", "L", "L", "R"), strict=True):
            pdf.cell(w, 5, text(value), align=align)
        pdf.ln()
    pdf.ln(3)
    pdf.set_font(family, "", 8)
    pdf.multi_cell(0, 4, text("What a payout cannot move (below the smallest unit Stripe pays) stays on the "
                              "balance. Every credit links to its evidence in the portal (Why was I paid)."))
    return bytes(pdf.output())
