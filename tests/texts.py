# ruff: noqa: RUF001  (Turkish and Cyrillic letters are the point of these texts)
"""Texts for the coverage, language and evasion tests: the AI texts of tests/data, a human
text written here (informal, first-person), and the manipulations an evader applies."""

from __future__ import annotations

import json
from pathlib import Path

_LABELLED = Path(__file__).parent / "data" / "labelled_small.jsonl"

HUMAN = """\
ok so update on the bathroom thing. the guy finally showed up on thursday (three days late, \
of course) and took one look at the pipe under the sink and goes "who did this". me, \
apparently. i did this. in 2019. with a youtube video and a wrench i borrowed from my \
neighbour Dave who still hasnt asked for it back lol. anyway he said the seal was basically \
held together by hope and that we're lucky the cabinet didnt rot through. cost me 140 bucks \
plus the part, which honestly is less than i was expecting.
My grandmother kept chickens until she was ninety-one. Not many, four or five at a time, and \
every one of them had a name she'd picked off the radio - there was a Perry Como and a Doris \
and a very mean one called Nixon. When I was small I was scared of Nixon. He'd chase me round \
the yard and she'd laugh and laugh and tell me to stand my ground. I never did.
Went to the match saturday, absolute shambles first half. We couldnt string three passes \
together and their number 9 was having the game of his life. Second half was better once the \
gaffer sorted the midfield out but 2-2 at home to that lot is not good enough, sorry. Parking \
was a nightmare too, took 40 mins to get out of the car park.
Does anyone know if the 47 bus still stops outside the library after they moved the stop for \
the roadworks? I was stood there for twenty minutes yesterday like an idiot and nothing came, \
and the app just says "service information unavailable" which is really helpful, thanks.
We tried that new ramen place on Elm last night. Broth was good, properly rich, but the \
noodles were a bit soft for me and it was loud enough that I had to shout at my sister across \
the table. Would go again for lunch maybe, when its quieter. The gyoza were the best thing we \
had tbh.
"""

TURKISH = (
    "Dün akşam arkadaşlarımla birlikte şehir merkezindeki yeni açılan restorana gittik. "
    "Yemekler gerçekten çok lezzetliydi ama servis biraz yavaştı ve garsonlar siparişimizi "
    "iki kez karıştırdı. Yine de tatlılar harikaydı, özellikle künefe. Hafta sonu tekrar "
    "gitmeyi düşünüyoruz çünkü fiyatlar da oldukça makul. Annem de gelmek istiyor, belki "
    "onu da götürürüz. Otopark sorunu var ama metroya çok yakın olduğu için sorun olmaz."
)


def ai_english() -> str:
    """The English AI-written texts of tests/data, joined (~1,600 characters)."""
    rows = [json.loads(line) for line in _LABELLED.read_text().splitlines() if line.strip()]
    return " ".join(r["text"] for r in rows if r["label"] == 1 and r["language"] == "en")


def long_human_with_ai_section(
    total: int = 60_000, section: int = 3_000, at: int = 30_000
) -> tuple[str, int, int]:
    """A ``total``-character human text with one ``section``-character AI-written section;
    returns the text and the section's offsets."""
    body = "\n".join([HUMAN.strip()] * (total // len(HUMAN) + 2))
    ai = " ".join([ai_english()] * (section // len(ai_english()) + 1))[:section]
    text = (body[:at] + ai + body[at:])[:total]
    return text, at, at + section


def evade(text: str) -> str:
    """What an evader does: Cyrillic look-alikes for a, e, o, c, p in every other word and
    a zero-width space inside every third word."""
    swap = str.maketrans("aeocp", "аеоср")
    words = text.split(" ")
    out = []
    for i, word in enumerate(words):
        if i % 2:
            word = word.translate(swap)
        if i % 3 == 0 and len(word) > 3:
            word = word[:2] + "\u200b" + word[2:]
        out.append(word)
    return " ".join(out)
