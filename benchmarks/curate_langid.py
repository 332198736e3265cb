"""Compare language detectors whose model ships in their package, for the English-only filter.

Usage: python benchmarks/curate_langid.py

Candidates (each skipped when not installed): py3langid (Cogumi's choice, a
dependency), langdetect (the spec's), lingua-language-detector. Labelled set:
the 324 English seed prompts plus non-English instructions in 12 languages
written for this benchmark, and English answers with code. Reported per
detector: load time, texts/s, English recall (English kept) and non-English
rejection (non-English dropped). Every detector sees the same prose (code
blocks, inline code and URLs removed, as the filter does).
"""

from __future__ import annotations

import json
import time

NON_ENGLISH = {
    "de": ["Erkläre mir bitte, wie ein Kühlschrank funktioniert und warum er Wärme nach außen abgibt.",
           "Schreibe ein kurzes Gedicht über den Herbst und die fallenden Blätter im Park.",
           "Wie viele Minuten hat ein Tag, und wie rechnet man das am einfachsten aus?",
           "Was ist der Unterschied zwischen einem Virus und einem Bakterium?",
           "Ich suche ein gutes Buch für eine lange Zugfahrt. Hast du eine Empfehlung?"],
    "fr": ["Explique-moi pourquoi le ciel est bleu pendant la journée et rouge au coucher du soleil.",
           "Écris une fonction Python qui inverse une chaîne de caractères sans utiliser de boucle.",
           "Quelle est la différence entre la météo et le climat ?",
           "Peux-tu m'aider à rédiger une lettre de remerciement pour mon voisin ?",
           "Combien de temps faut-il pour cuire un œuf dur à la perfection ?"],
    "es": ["¿Por qué flota el hielo en el agua? Explícalo de forma sencilla.",
           "Escribe un cuento corto sobre un robot que aprende a pintar.",
           "Resuelve la ecuación 3x + 7 = 22 y explica cada paso.",
           "¿Qué consejos me das para mi primera entrevista de trabajo?",
           "Describe el ciclo del agua en la naturaleza con ejemplos."],
    "it": ["Spiegami come funziona la fotosintesi nelle piante verdi.",
           "Scrivi una breve poesia sul mare d'inverno.",
           "Qual è la differenza tra un processo e un thread in informatica?",
           "Come posso chiedere un giorno di ferie al mio responsabile?",
           "Quanto fa il quindici per cento di duecentoquaranta?"],
    "pt": ["Explique por que temos estações do ano na Terra.",
           "Escreva uma função que verifica se uma palavra é um palíndromo.",
           "Quais são os planetas do sistema solar em ordem a partir do Sol?",
           "Como posso fazer amigos depois de me mudar para uma cidade nova?",
           "Descreva um pôr do sol no oceano em três frases."],
    "nl": ["Leg uit hoe een elektrische motor elektrische energie omzet in beweging.",
           "Schrijf een kort verhaal over een dappere slak die de wereld wil zien.",
           "Wat is het verschil tussen snelheid en versnelling?",
           "Hoe vraag ik mijn buurman beleefd om minder lawaai te maken?",
           "Bereken de oppervlakte van een rechthoek van acht bij vijf centimeter."],
    "ru": ["Объясни, почему небо голубое днём и красное на закате.",
           "Напиши функцию на Python, которая считает гласные в слове.",
           "В чём разница между митозом и мейозом?",
           "Как вежливо отказаться от приглашения на вечеринку?",
           "Сколько минут в трёх с половиной часах?"],
    "tr": ["Gökyüzü neden mavidir, basitçe açıklar mısın?",
           "Sonbahar hakkında kısa bir şiir yaz.",
           "Bir yığın veri yapısını Python ile nasıl uygularım?",
           "Yeni bir şehirde arkadaş edinmek için ne yapmalıyım?",
           "Bir trenin iki saatte yüz seksen kilometre gitmesi durumunda ortalama hızı nedir?"],
    "fi": ["Selitä, miksi vuodenajat vaihtelevat maapallolla.",
           "Kirjoita lyhyt runo syksyn lehdistä.",
           "Mikä on ero sään ja ilmaston välillä?",
           "Miten pyydän esimieheltäni vapaapäivää ensi viikolla?",
           "Laske kolmen ja puolen tunnin minuuttimäärä."],
    "pl": ["Wyjaśnij, dlaczego lód unosi się na wodzie.",
           "Napisz krótkie opowiadanie o robocie, który uczy się malować.",
           "Jaka jest różnica między wirusem a bakterią?",
           "Jak grzecznie odmówić zaproszenia na przyjęcie?",
           "Ile to jest piętnaście procent z dwustu czterdziestu?"],
    "sv": ["Förklara varför himlen är blå på dagen.",
           "Skriv en kort dikt om regnet i staden.",
           "Vad är skillnaden mellan väder och klimat?",
           "Hur ber jag min chef om en ledig dag nästa vecka?",
           "Beskriv en solnedgång över havet i tre meningar."],
    "id": ["Jelaskan mengapa langit berwarna biru pada siang hari.",
           "Tulis puisi pendek tentang hujan di kota.",
           "Apa perbedaan antara cuaca dan iklim?",
           "Bagaimana cara meminta cuti kepada atasan saya dengan sopan?",
           "Berapa menit dalam tiga setengah jam?"],
}

ENGLISH_WITH_CODE = [
    "Here is a function that reverses a list:\n```python\ndef rev(xs):\n    return xs[::-1]\n```\nIt returns a new list.",
    "Use `git status` to see changed files, then `git add -p` to stage them piece by piece.",
    "The query is `SELECT name FROM customers WHERE city = 'Lisboa';` and it returns every matching name.",
    "Run `pip install requests` and then call `requests.get(url)` to download the page.",
]


def detectors():
    """(name, load function returning a callable text -> is_english)."""
    out = []

    def py3langid_loader():
        from cogumi.curate import language

        language.detect("warm up the model, please")
        return lambda t: language.detect(t)[0] in ("en", "unknown")

    out.append(("py3langid (cogumi)", py3langid_loader))

    def langdetect_loader():
        from langdetect import DetectorFactory, detect

        from cogumi.curate.language import prose

        DetectorFactory.seed = 0
        return lambda t: detect(prose(t)) == "en"

    out.append(("langdetect", langdetect_loader))

    def lingua_loader():
        from lingua import Language, LanguageDetectorBuilder

        from cogumi.curate.language import prose

        det = LanguageDetectorBuilder.from_all_languages().build()
        det.detect_language_of("warm up")
        return lambda t: det.detect_language_of(prose(t)) == Language.ENGLISH

    out.append(("lingua", lingua_loader))
    return out


def main() -> None:
    from cogumi.curate.sources import SEED_FILE

    english = [json.loads(line)["instruction"] for line in SEED_FILE.read_text().splitlines()] + ENGLISH_WITH_CODE
    foreign = [t for texts in NON_ENGLISH.values() for t in texts]
    rows = []
    for name, loader in detectors():
        try:
            t0 = time.perf_counter()
            is_en = loader()
            load_s = time.perf_counter() - t0
        except ImportError:
            rows.append({"detector": name, "installed": False})
            continue
        t0 = time.perf_counter()
        en_ok = sum(is_en(t) for t in english)
        fo_ok = sum(not is_en(t) for t in foreign)
        secs = time.perf_counter() - t0
        rows.append({"detector": name, "installed": True, "load_s": round(load_s, 2),
                     "texts_per_s": round((len(english) + len(foreign)) / secs, 1),
                     "english_kept": f"{en_ok}/{len(english)}", "non_english_dropped": f"{fo_ok}/{len(foreign)}"})
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
