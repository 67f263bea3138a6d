"""Built-in benchmark texts: realistic prose of mixed style and length.

Paragraphs written for this benchmark (forum posts, news, encyclopaedic prose and the
polished register of generated text, a few languages) are combined into texts of one to
five paragraphs, so lengths spread from about 350 bytes to about 2.3 KB with a median
near 1.3 KB, like the training corpus (median 1.5 KB). ``--data FILE.jsonl`` uses your
own texts instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import cycle, islice
from pathlib import Path

PARAGRAPHS: tuple[str, ...] = (
    "So the landlord finally sent someone to look at the boiler, three weeks after I first "
    "reported it. The guy shows up at 8am, spends ten minutes staring at the pressure gauge, "
    "taps it twice and says it's fine. It is not fine. The radiators in the back bedroom "
    "have been cold since October and I've been sleeping in a hoodie. Anyone dealt with "
    "this before? Do I need to put it in writing or is the text message thread enough?",
    "In today's rapidly evolving digital landscape, organisations must navigate an "
    "increasingly complex array of challenges. By leveraging data-driven insights and "
    "fostering a culture of continuous improvement, businesses can unlock new opportunities "
    "for growth. Moreover, it is essential to recognise that sustainable success depends on "
    "aligning strategic objectives with the evolving needs of stakeholders, ensuring that "
    "every initiative delivers measurable value.",
    "The council voted 7-2 on Tuesday night to extend the bike lane on Harbour Road as far as "
    "the ferry terminal, ending a dispute that had dragged on since the spring. Shop owners "
    "on the eastern stretch had argued that removing twenty-two parking spaces would cost "
    "them passing trade; cycling groups pointed to two serious collisions at the junction "
    "with Mill Street last year. Work is expected to start in March and take about six weeks.",
    "Photosynthesis is the process by which green plants, algae and some bacteria convert "
    "light energy into chemical energy. In the light-dependent reactions, which take place in "
    "the thylakoid membranes, water is split and oxygen is released, while ATP and NADPH are "
    "produced. These carriers then power the Calvin cycle in the stroma, where carbon dioxide "
    "is fixed into three-carbon sugars that the plant uses to build glucose and other "
    "organic compounds.",
    "honestly the second half of the book drags. the first 150 pages are great, the sister "
    "coming back from Lisbon, the fight at the wedding, all of that works. then it turns into "
    "a courtroom thing and every chapter is somebody re-explaining what we already know. i "
    "finished it because my book club picked it but i wouldn't recommend it unless you really "
    "like legal procedure. 3/5, generous.",
    "Furthermore, effective communication plays a pivotal role in fostering collaboration "
    "within teams. When team members feel heard and valued, they are more likely to "
    "contribute innovative ideas and take ownership of their work. To achieve this, leaders "
    "should prioritise transparency, provide constructive feedback, and create an inclusive "
    "environment where diverse perspectives are not only welcomed but actively encouraged.",
    "Der Regionalzug nach Freiburg fiel heute Morgen wegen einer Stellwerksstörung aus, und "
    "der Ersatzbus kam mit vierzig Minuten Verspätung. Am Bahnsteig standen bestimmt hundert "
    "Leute, niemand wusste etwas, die Anzeige zeigte einfach weiter die alte Abfahrtszeit. "
    "Ich habe dann ein Taxi mit zwei Kollegen geteilt, was am Ende fast genauso teuer war "
    "wie das Monatsticket.",
    "La cuenca del río Ebro ocupa una superficie de unos 85.000 kilómetros cuadrados y es la "
    "más extensa de las que vierten sus aguas al Mediterráneo en la península ibérica. Su "
    "régimen es pluvionival, con crecidas en primavera por el deshielo de los Pirineos y "
    "estiajes marcados en verano. El delta, en la provincia de Tarragona, es uno de los "
    "humedales más importantes del Mediterráneo occidental.",
    "Quick update on the migration: the read replicas are on the new cluster and lag is under "
    "a second, but the nightly export job still points at the old primary because of a "
    "hard-coded hostname in the cron wrapper. I've opened a ticket for it. Plan is to flip "
    "writes on Thursday at 06:00 UTC, keep the old primary read-only for 48 hours, then shut "
    "it down if nothing screams. Shout if Thursday is bad for your team.",
    "In conclusion, the integration of artificial intelligence into healthcare holds immense "
    "potential to transform patient outcomes. From early disease detection to personalised "
    "treatment plans, AI-powered tools can augment the capabilities of medical "
    "professionals. However, it is crucial to address ethical considerations, including data "
    "privacy, algorithmic bias and accountability, to ensure that these technologies are "
    "deployed responsibly and equitably.",
    "My grandmother kept bees for forty years behind the house in Kerry, and the one thing she "
    "always said was that you never open a hive on a thundery day. I thought it was folklore "
    "until I tried it myself last July. Within a minute there were bees in my veil, up my "
    "sleeves and one somehow inside my boot. Lesson learned; she was right about most things.",
    "Overall, the findings of this study highlight the importance of adopting a holistic "
    "approach to urban planning. By integrating green infrastructure, promoting sustainable "
    "transportation options and engaging local communities in the decision-making process, "
    "cities can enhance resilience to climate change while simultaneously improving the "
    "quality of life for residents. Future research should explore the long-term impacts of "
    "these strategies across diverse urban contexts.",
)

# Paragraphs per text: lengths from ~350 B to ~2.3 KB, median ~1.3 KB.
_SHAPE = (3, 1, 4, 2, 3, 5, 2, 4, 1, 4, 3, 3)


def sample_texts() -> list[str]:
    """One text per (start paragraph, shape) pair: 144 distinct texts."""
    texts = []
    for start in range(len(PARAGRAPHS)):
        for i, k in enumerate(_SHAPE):
            step = 1 + i % (len(PARAGRAPHS) - 1)  # a different mix for every shape
            picked = [PARAGRAPHS[(start + step * j) % len(PARAGRAPHS)] for j in range(k)]
            texts.append("\n\n".join(picked))
    return texts


def load_texts(data: Path | None = None) -> list[str]:
    """The built-in texts, or the ``text`` field of every line of a JSONL file."""
    if data is None:
        return sample_texts()
    texts = []
    with data.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                text = json.loads(line).get("text")
                if isinstance(text, str) and text:
                    texts.append(text)
    if not texts:
        raise ValueError(f"{data} has no lines with a non-empty 'text'")
    return texts


def take(texts: list[str], n: int) -> Iterator[str]:
    """``n`` texts, cycling through ``texts``."""
    return islice(cycle(texts), n)
