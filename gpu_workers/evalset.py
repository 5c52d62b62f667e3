"""The labelled evaluation set for attribution, built from the sample catalog's real
prose (``tributary/data/sample_catalog.json``: 20 public-domain openings, 5 holders).

Levels (``EvalCase.level``):

- ``verbatim``: one to three consecutive sentences copied from a work, inside
  unrelated filler (planted: the copied words' fraction of the output);
- ``light_edit``: a 40-60 word passage with words swapped for synonyms and a few
  articles dropped;
- ``paraphrase``: hand-written heavy paraphrases of each work's opening (same content,
  almost no shared wording);
- ``multi``: passages of 2-3 works of different holders in one output; the planted
  shares are proportional to the words taken from each;
- ``same_topic``: hand-written text on the topic of a work (history, places, background),
  not derived from it;
- ``altered``: hand-written restatements of a work's opening with its facts inverted
  (entity and negation swaps): derived text with the meaning altered;
- ``unrelated``: same-genre text, 163 public-domain fiction passages from books outside
  the catalog (``data/novels_same_genre.jsonl``, ``data/evalsets/novels/README.md``), and 100
  everyday outputs (no sentence of them is used as filler).

A third of the cases (seeded) are marked ``heldout``.

Generated parts are deterministic for a seed; the hand-written parts are below.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from gpu_workers.segment import words
from tributary.sample import UNRELATED, light_edit, load_catalog

PARAPHRASES = {
    "w-pride-prejudice": "Everyone agrees that a rich bachelor is surely looking for someone to marry. When such a "
                         "gentleman moves into a district, the local families, knowing nothing of his wishes, already "
                         "regard him as the future husband of one of their girls.",
    "w-emma": "Clever, good-looking and wealthy, the young heroine had reached almost twenty-one having known hardly "
              "any trouble. Her loving, easygoing father had two daughters, she the younger, and once her sister "
              "wed she ran his household from an early age.",
    "w-sense-sensibility": "For generations the Dashwoods had lived on their estate in Sussex, at Norland Park, in "
                           "the middle of their lands, earning the respect of all their neighbours. The previous "
                           "master of the property never married and lived to be very old.",
    "w-persuasion": "The baronet of Kellynch in Somerset read nothing for pleasure except the book listing the "
                    "baronetcies; it filled his empty hours and soothed his bad ones, and leafing through the "
                    "ancient titles made him forget his household worries.",
    "w-moby-dick": "You can call me Ishmael. A while back, with hardly a penny to my name and nothing on land to hold "
                   "me, I decided to go to sea for a bit and look at the ocean part of the globe, my usual cure for a "
                   "gloomy mood.",
    "w-bartleby": "I am getting on in years. My work over three decades has put me in close touch with an odd and "
                  "curious group nobody has written about: the clerks who copy legal documents by hand. I have known "
                  "many of them and could tell plenty of stories.",
    "w-scarlet-letter": "A crowd of men with beards, dressed in dull clothes and tall grey hats, stood with women, "
                        "some hooded and some not, before a wooden building whose heavy oak door was covered in "
                        "iron studs. Every new settlement, however idealistic, soon sets aside ground for a prison.",
    "w-seven-gables": "Partway along a side street in a town in New England there is an old weathered wooden house "
                      "with seven steep gables pointing in different directions and a great cluster of chimneys in "
                      "the centre; locals call it the Pyncheon House, and a wide elm stands before its door.",
    "w-two-cities": "That era was at once wonderful and terrible, wise and foolish, full of faith and full of doubt, "
                    "bright and dark, hopeful and desperate; people had everything ahead of them and nothing ahead of "
                    "them, all heading straight to heaven or straight the other way.",
    "w-great-expectations": "Because my surname was Pirrip and my first name Philip, as a small child I could only "
                            "manage to say Pip, and so Pip is what everyone called me. I know my father's surname from "
                            "his gravestone and from my sister, who married the village blacksmith.",
    "w-christmas-carol": "To start with, Marley was dead, no question about it. The clergyman, the clerk, the "
                         "undertaker and the chief mourner all signed the burial register, and so did Scrooge, whose "
                         "signature was trusted on the exchange. Old Marley was utterly dead.",
    "w-david-copperfield": "These pages will reveal whether I end up as the hero of my own story or someone else "
                           "takes that role. I was born, so I have been told, on a Friday at midnight, and just as the "
                           "clock started striking I started crying.",
    "w-scandal-bohemia": "For Holmes she was always simply the woman; he hardly ever used any other name for her. She "
                         "outshone every other woman in his view, yet it was not love he felt for Irene Adler, since "
                         "his cold and exact mind despised every emotion.",
    "w-red-headed-league": "One autumn day last year I went to see my friend Holmes and found him talking intently "
                           "with a fat, ruddy old man whose hair was a blazing red. I apologised and began to leave, "
                           "but Holmes pulled me inside and shut the door.",
    "w-baskervilles": "Holmes, who usually rose late unless he had stayed up all night, sat eating breakfast while I "
                      "stood by the fireplace and picked up the walking stick our caller had forgotten the evening "
                      "before, a thick wooden cane with a bulbous head.",
    "w-study-scarlet": "I qualified as a doctor at the University of London in 1878 and then went to Netley for the "
                       "army surgeons' training. After that I was posted to the Fifth Northumberland Fusiliers as an "
                       "assistant surgeon, but the regiment was in India when the Afghan war began.",
    "w-frankenstein": "You will be glad to know that my venture, which you feared so much, has begun without any "
                      "misfortune. I got here yesterday and write first to tell my dear sister that I am well and "
                      "ever more hopeful; walking through Petersburgh I feel a chill wind from the north.",
    "w-dracula": "I left Munich in the evening on the first of May and reached Vienna early the next day, an hour "
                 "behind schedule. From what I saw from the train and on a short walk, Buda-Pesth looks marvellous, "
                 "but I stayed close to the station because we were late.",
    "w-alice": "Sitting on the riverbank next to her sister with nothing to do, Alice grew bored. She glanced at her "
               "sister's book once or twice, but it had neither pictures nor dialogue, and she wondered what good a "
               "book like that could possibly be.",
    "w-time-machine": "The Time Traveller, as we may call him, was explaining an obscure idea to us, his grey eyes "
                      "bright and his normally pale face flushed. The fire was burning well, the lamps glowed softly "
                      "on the silver and the bubbles in our glasses, and his special chairs held us comfortably.",
}

# (the work it must not be attributed to, the text): same topic or people, not derived
NEAR_MISSES = [
    ("w-pride-prejudice", "Mr. Bennet never worried about marrying off his daughters; a wealthy newcomer meant "
                          "nothing to him, and he refused to call on anyone at Netherfield."),
    ("w-pride-prejudice", "Regency novels often open with a ball, where young women and their mothers size up "
                          "the eligible officers stationed nearby."),
    ("w-emma", "Emma Woodhouse was poor, plain and unhappy, and she left her father's house in Highbury as soon "
               "as she turned eighteen."),
    ("w-moby-dick", "Whaling ships out of Nantucket in the 1840s carried crews of thirty men on voyages that "
                    "could last three or four years."),
    ("w-moby-dick", "Ishmael stayed ashore that November, found steady work in a counting house and never "
                    "thought about the sea again."),
    ("w-two-cities", "Historians describe the years before the French Revolution as a time of rising bread "
                     "prices, heavy taxes and growing anger in Paris."),
    ("w-christmas-carol", "Marley was alive and well, and Scrooge was a generous man who closed the office early "
                          "every Christmas Eve."),
    ("w-christmas-carol", "Victorian Christmas traditions such as cards, crackers and decorated trees became "
                          "popular in England during the 1840s."),
    ("w-great-expectations", "The blacksmith's forge in a Kentish village would have been hot, loud and busy from "
                             "dawn until dusk."),
    ("w-scandal-bohemia", "Irene Adler married the King of Bohemia, and Sherlock Holmes attended the wedding as "
                          "an honoured guest."),
    ("w-red-headed-league", "Watson arrived at Baker Street to find the rooms empty; Holmes had gone to the "
                            "countryside for a week of rest."),
    ("w-baskervilles", "Dartmoor is a wide upland in Devon, known for its granite tors, peat bogs and sudden "
                       "thick fogs."),
    ("w-study-scarlet", "Army surgeons in the Second Afghan War treated wounds, fevers and cholera in field "
                        "hospitals far from any city."),
    ("w-frankenstein", "Polar expeditions of the nineteenth century often ended in disaster when ships were "
                       "trapped in the pack ice for months."),
    ("w-dracula", "Night trains from Munich to Vienna today take about four hours and usually arrive on time."),
    ("w-alice", "Alice loved books without pictures and spent the whole afternoon reading quietly next to her "
                "sister, never once feeling bored."),
    ("w-time-machine", "Physicists treat time as a fourth dimension in relativity, but travel into the past "
                       "remains purely hypothetical."),
    ("w-seven-gables", "Colonial houses in New England were built of timber with steep roofs to shed the heavy "
                       "winter snow."),
    ("w-scarlet-letter", "The Puritan settlers of Massachusetts Bay punished minor crimes with fines, the stocks "
                         "or public whipping."),
    ("w-bartleby", "Modern law firms rely on word processors and e-filing; nobody copies contracts by hand any "
                   "more."),
]

MORE_UNRELATED = [
    "The printer on the third floor is out of toner, so send large jobs to the one near the kitchen.",
    "Stretch for five minutes before you run, and increase your weekly distance by no more than ten percent.",
    "The train to the airport leaves every fifteen minutes from platform two until midnight.",
    "Our new pricing plan charges per active user and includes unlimited storage for teams.",
    "Water the basil when the top inch of soil feels dry, and pinch off the flowers to keep the leaves tender.",
    "The firmware update fixes a bug that drained the battery when Bluetooth was left on overnight.",
    "Please submit your expense report with scanned receipts before the fifth of each month.",
    "The museum is free on the first Sunday of the month, but the special exhibition needs a ticket.",
    "A good night's sleep helps memory, mood and concentration more than an extra cup of coffee.",
    "The library extends loan periods to four weeks during the summer holidays.",
    "To change the tyre, loosen the nuts slightly before you raise the car with the jack.",
    "The stock index closed higher today after the central bank kept interest rates unchanged.",
    "Add the eggs one at a time, beating well after each, then fold in the flour gently.",
    "The conference call will use the usual link; mute your microphone when you are not speaking.",
    "Our backup job runs nightly at two and keeps thirty days of snapshots in a separate region.",
    "The football club signed a new striker on a three-year contract worth an undisclosed fee.",
    "Remember to bring sunscreen, a hat and plenty of water for the hike to the waterfall.",
    "The coffee machine descaling cycle takes twenty minutes and uses a full tank of water.",
    "Learning a language is easier with short daily practice than with long sessions once a week.",
    "The hotel offers late checkout until two in the afternoon for members of its loyalty program.",
    "Electric cars lose some range in cold weather because the battery chemistry slows down.",
    "The school bus will pick children up ten minutes earlier while the bridge is under repair.",
    "To merge two spreadsheets, match the rows on the customer id column and remove duplicates.",
    "The bakery on the corner sells sourdough on weekends and sells out before noon.",
    "Vaccination appointments can be booked online or by calling the clinic during office hours.",
    "The gym will close for maintenance next Monday; the pool reopens on Wednesday.",
    "Our app stores your settings locally and syncs them when you sign in on another device.",
    "The weather service expects heavy rain on Friday with strong winds along the coast.",
    "Keep receipts for home office equipment; some of it may be deductible on your tax return.",
    "The orchestra's spring concert features a new piece by a local composer and a Mozart symphony.",
    "Unplug chargers when they are not in use to save a little energy and reduce fire risk.",
    "The delivery is scheduled between nine and noon; someone must be home to sign for it.",
    "The team retrospective found that smaller pull requests were reviewed twice as fast.",
    "Rinse the rice until the water runs clear, then cook it with one and a half cups of water per cup.",
    "The parking garage accepts contactless payment at the exit barrier.",
    "Our quarterly newsletter covers product updates, customer stories and upcoming webinars.",
    "Feed the cat twice a day and keep fresh water in a bowl away from the litter box.",
    "The marathon training plan builds up to a long run of thirty kilometres three weeks before the race.",
    "Set the thermostat a degree or two lower in winter to cut heating costs noticeably.",
    "The hiring committee will interview the shortlisted candidates over two days next week.",
]


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?;])\s+(?=[\"A-Z])", " ".join(text.split())) if s.strip()]


def _filler(rng: random.Random, pool: list[str], n: int) -> str:
    return " ".join(rng.sample(pool, n))


SAME_GENRE_FILE = Path(__file__).resolve().parent / "data" / "novels_same_genre.jsonl"
# near misses that restate the work's own opening with its facts inverted: derived text with
# the meaning altered (reported with the altered level), not independent text on the topic
ALTERED_NEAR_MISSES = {0, 2, 4, 6, 9, 10, 15}


def same_genre_passages() -> list[dict[str, str]]:
    """Public-domain fiction from books outside the catalog (data/evalsets/novels/README.md)."""
    return [json.loads(line) for line in SAME_GENRE_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]

# everyday sentences from templates: travel, family, weather, work, money, health, home
# (the topics an ordinary answer shares with novels), so the calibration sees many
# independent ordinary texts, not only the few written out above
TEMPLATES = [
    ("My {rel} {travel} to {city} on {day}, but the {vehicle} was {late}.",
     {"rel": ["sister", "brother", "father", "mother", "aunt", "cousin", "neighbour", "manager"],
      "travel": ["flew", "took the train", "drove", "went by coach", "travelled"],
      "city": ["Berlin", "Chicago", "Lisbon", "Osaka", "Toronto", "Madrid", "Nairobi", "Sydney"],
      "day": ["Monday", "Tuesday", "Friday", "the weekend", "a holiday"],
      "vehicle": ["flight", "train", "bus", "ferry"],
      "late": ["an hour late", "cancelled", "overbooked", "delayed by fog"]}),
    ("The {shop} on {street} now {opens} and offers {offer} to {who}.",
     {"shop": ["bakery", "pharmacy", "bookshop", "hardware store", "cafe", "bike shop", "florist"],
      "street": ["Main Street", "the high street", "the corner", "Elm Road", "the market square"],
      "opens": ["opens at seven", "stays open late", "closes on Sundays", "opens on public holidays"],
      "offer": ["a ten percent discount", "free delivery", "a loyalty card", "same-day repairs"],
      "who": ["students", "pensioners", "new customers", "members", "local residents"]}),
    ("{when}, the forecast says {weather} in {region}, so {advice}.",
     {"when": ["Tomorrow", "This weekend", "On Thursday", "Next week", "Tonight"],
      "weather": ["heavy rain", "strong winds", "a heatwave", "light snow", "thick fog", "thunderstorms"],
      "region": ["the north", "the coast", "the valley", "the city centre", "the mountains"],
      "advice": ["take an umbrella", "avoid driving", "check for delays", "keep pets indoors",
                 "drink plenty of water"]}),
    ("Our {team} team will {action} the {thing} before {deadline}.",
     {"team": ["finance", "support", "design", "platform", "sales", "legal", "data"],
      "action": ["review", "migrate", "update", "test", "document", "replace", "audit"],
      "thing": ["billing system", "onboarding guide", "login page", "pricing table", "backup policy",
                "supplier contracts", "quarterly forecast"],
      "deadline": ["the end of the month", "Friday", "the next release", "the board meeting", "the audit"]}),
    ("If you {symptom}, {care} and {doctor}.",
     {"symptom": ["have a mild fever", "sprain your ankle", "feel dizzy in the heat", "catch a cold",
                  "get a headache after screen work"],
      "care": ["rest for a day", "drink warm fluids", "keep it elevated", "take regular breaks", "sleep early"],
      "doctor": ["see a doctor if it lasts a week", "call the clinic if it gets worse",
                 "ask a pharmacist for advice", "book a check-up"]}),
    ("To {task}, {step1}, then {step2}.",
     {"task": ["reset the router", "clean the oven", "plant tomatoes", "renew a passport", "set up the printer",
               "paint a fence", "repot a plant", "update the app"],
      "step1": ["switch it off", "read the instructions", "gather the documents", "clear the area",
                "back up your data"],
      "step2": ["wait a few minutes", "follow the on-screen steps", "book an appointment online",
                "apply a second coat", "water it well"]}),
    ("The {event} in {place} raised {amount} for {cause}.",
     {"event": ["charity run", "school fair", "bake sale", "concert", "auction", "quiz night"],
      "place": ["the park", "the town hall", "the community centre", "the stadium", "the library"],
      "amount": ["two thousand dollars", "a record sum", "more than expected", "five hundred pounds"],
      "cause": ["the animal shelter", "new playground equipment", "the food bank", "hospital care",
                "flood relief"]}),
    ("{name} {did} her {thing} and {result}.",
     {"name": ["Maria", "Priya", "Chen", "Fatima", "Olivia", "Sofia", "Amara", "Hannah"],
      "did": ["finished", "sold", "repaired", "finally booked", "cancelled", "upgraded"],
      "thing": ["old car", "kitchen", "holiday", "phone contract", "driving lessons", "garden shed"],
      "result": ["saved a lot of money", "felt relieved", "told everyone at work",
                 "started planning the next project", "wrote a glowing review"]}),
]


def template_sentences(seed: int = 11, count: int = 700) -> list[str]:
    """Distinct sentences filled from TEMPLATES, deterministic for a seed."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < count:
        template, slots = TEMPLATES[len(out) % len(TEMPLATES)]
        sentence = template.format(**{k: rng.choice(v) for k, v in slots.items()})
        if sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    return out


def unrelated_pools() -> tuple[list[str], list[str]]:
    """Two disjoint pools of everyday sentences (written for this set or filled from
    templates): filler for the planted cases, and everyday unrelated outputs."""
    everything = list(UNRELATED) + MORE_UNRELATED + template_sentences()
    rng = random.Random(5)
    rng.shuffle(everything)
    half = len(everything) // 2
    return everything[:half], everything[half:]


def unrelated_outputs(pool: list[str], count: int, seed: int) -> list[str]:
    """Up to ``count`` outputs of 1-3 sentences, no sentence used twice, so each output
    is an independent sample (the calibration's statistics depend on that)."""
    rng = random.Random(seed)
    sentences = list(pool)
    rng.shuffle(sentences)
    out: list[str] = []
    while sentences and len(out) < count:
        take = min(len(sentences), rng.randint(1, 3))
        out.append(" ".join(sentences[:take]))
        del sentences[:take]
    return out


def build(seed: int = 17, catalog: dict[str, Any] | None = None, unrelated: int = 100) -> list[EvalCase]:
    catalog = catalog or load_catalog()
    works = {w["work_id"]: w for w in catalog["works"]}
    rng = random.Random(seed)
    _, pool = unrelated_pools()
    cases: list[EvalCase] = []
    ids = sorted(works)
    for n in range(40):
        work = works[ids[n % len(ids)]]
        sentences = _sentences(work["text"])
        take = rng.randint(1, 3)
        start = rng.randrange(0, max(1, len(sentences) - take + 1))
        span = " ".join(sentences[start:start + take])
        while len(span.split()) < 12 and (start > 0 or start + take < len(sentences)):
            # one sentence or more, and at least 12 words: a short exclamation is not a copied sentence
            if start + take < len(sentences):
                take += 1
            else:
                start, take = start - 1, take + 1
            span = " ".join(sentences[start:start + take])
        text = f"{_filler(rng, pool, 1)} {span} {_filler(rng, pool, rng.randint(0, 2))}".strip()
        cases.append(EvalCase(f"verbatim-{n:03d}", "verbatim", text,
                              {work["work_id"]: len(words(span)) / len(words(text))}))
    for n in range(20):
        work = works[ids[n % len(ids)]]
        tokens = work["text"].split()
        length = rng.randint(40, 60)
        start = rng.randrange(0, max(1, len(tokens) - length))
        cases.append(EvalCase(f"edit-{n:03d}", "light_edit", light_edit(rng, " ".join(tokens[start:start + length]), 0.9, 0.3,
                                                             ("the", "a", "and", "of")),
                              {work["work_id"]: 1.0}))
    for work_id, text in sorted(PARAPHRASES.items()):
        cases.append(EvalCase(f"paraphrase-{work_id}", "paraphrase", text, {work_id: 1.0}))
    for n in range(15):
        chosen: list[dict[str, Any]] = []
        for work_id in rng.sample(ids, len(ids)):
            if all(works[work_id]["holder_id"] != c["holder_id"] for c in chosen):
                chosen.append(works[work_id])
            if len(chosen) == 2 + n % 2:
                break
        parts, planted = [], {}
        for work in chosen:
            tokens = work["text"].split()
            length = rng.randint(25, 45)
            start = rng.randrange(0, max(1, len(tokens) - length))
            parts.append(" ".join(tokens[start:start + length]))
            planted[work["work_id"]] = float(length)
        total = sum(planted.values())
        cases.append(EvalCase(f"multi-{n:03d}", "multi", " ".join(parts),
                              {w: v / total for w, v in planted.items()}))
    for n, (work_id, text) in enumerate(NEAR_MISSES):
        if n in ALTERED_NEAR_MISSES:
            cases.append(EvalCase(f"altered-{n:03d}", "altered", text, {work_id: 1.0}))
        else:
            cases.append(EvalCase(f"same-topic-{n:03d}", "same_topic", text, {}, (work_id,)))
    for n, passage in enumerate(same_genre_passages()):
        cases.append(EvalCase(f"fiction-{n:03d}", "unrelated", passage["text"],
                              cluster=passage.get("work") or passage["source"]))
    for n, text in enumerate(unrelated_outputs(pool, unrelated, seed + 1)):
        cases.append(EvalCase(f"everyday-{n:03d}", "unrelated", text))
    split = random.Random(seed + 2)
    return [EvalCase(c.case_id, c.level, c.text, c.planted, c.avoid, "heldout" if split.random() < 1 / 3 else "dev",
                     c.cluster) for c in cases]


from gpu_workers.evaluate import EvalCase  # noqa: E402  (evaluate imports this module lazily)
