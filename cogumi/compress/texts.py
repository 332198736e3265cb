"""Built-in English text: a calibration set and a disjoint held-out set for perplexity.

Written for Cogumi (no download), spread over the curated domains (code, reasoning,
math, science, conversation, creative). Used when no curated samples or held-out
file are given. Small on purpose: enough to calibrate and score a small model on
CPU, not a substitute for the spec's 2,048 calibration samples on a real run.
Kept as Python so it ships with the package without package-data settings.
"""

from __future__ import annotations


def _p(text: str) -> str:
    """One prose paragraph: the literal's line breaks and indentation become single spaces."""
    return " ".join(text.split())


CALIBRATION: tuple[str, ...] = (
    _p("""Water boils at a lower temperature on a mountain than at sea level because the air pressure
    is lower. Molecules at the surface of the liquid escape more easily when less air presses down
    on them, so the vapour pressure reaches the surrounding pressure sooner. Cooks at high altitude
    add time to recipes, and pressure cookers raise the boiling point to cook food faster."""),
    """def fibonacci(n):
    \"\"\"Return the first n Fibonacci numbers.\"\"\"
    numbers = [0, 1]
    while len(numbers) < n:
        numbers.append(numbers[-1] + numbers[-2])
    return numbers[:n]

print(fibonacci(10))""",
    _p("""A train leaves the station at 9:00 and travels at 80 kilometres per hour. A second train
    leaves the same station at 10:00 on a parallel track at 120 kilometres per hour. The second
    train gains 40 kilometres every hour and starts 80 kilometres behind, so it catches up after
    two hours, at 12:00, when both have covered 240 kilometres."""),
    """User: Can you suggest a simple dinner I can make in twenty minutes?
Assistant: Try a vegetable stir-fry. Slice an onion, a pepper and a carrot, fry them in a hot pan
with a little oil for five minutes, add cooked rice or noodles, a splash of soy sauce and some
garlic, and finish with a fried egg on top. It is quick, cheap and easy to vary.""",
    _p("""The lighthouse keeper had not spoken to anyone for eleven days when the boat appeared. It came
    out of the fog slowly, its engine coughing, and a girl in a yellow coat stood at the bow holding
    a lantern that was not lit. She waved as if they were old friends, and he found, to his surprise,
    that he was waving back."""),
    _p("""If every cat in the village is afraid of dogs, and Tom is a cat who lives in the village, then
    Tom is afraid of dogs. The conclusion follows from the premises alone; we do not need to know
    anything else about Tom. If instead we only knew that most cats were afraid, the conclusion
    would be likely but no longer certain."""),
    _p("""Mitochondria are often called the powerhouses of the cell. They take in nutrients, break them
    down and produce adenosine triphosphate, the molecule cells use to store and move energy. They
    have their own small circle of DNA, inherited from the mother, which supports the idea that they
    were once free-living bacteria absorbed by an ancestral cell."""),
    """SELECT customers.name, COUNT(orders.id) AS order_count
FROM customers
LEFT JOIN orders ON orders.customer_id = customers.id
WHERE orders.created_at >= '2024-01-01'
GROUP BY customers.name
ORDER BY order_count DESC
LIMIT 10;""",
    _p("""To find the area of a circle, square its radius and multiply by pi. A circle with a radius of
    three centimetres therefore has an area of nine pi, about 28.27 square centimetres. Doubling the
    radius multiplies the area by four, because the radius appears squared in the formula."""),
    """User: What is the difference between weather and climate?
Assistant: Weather is what the atmosphere is doing right now or over the next few days: rain,
wind, temperature. Climate is the long-term pattern of weather in a place, usually averaged over
thirty years or more. A cold week does not change the climate, just as one good day does not
make a season.""",
    _p("""The old library smelled of dust and cedar. Between the shelves of atlases someone had left a
    note folded into a paper crane, and on its wing, in tiny handwriting, were the words: turn left
    at the globe. Mira looked up. The globe at the end of the aisle was slowly, impossibly,
    spinning."""),
    """class Stack:
    def __init__(self):
        self._items = []

    def push(self, item):
        self._items.append(item)

    def pop(self):
        if not self._items:
            raise IndexError("pop from an empty stack")
        return self._items.pop()""",
    _p("""Vaccines train the immune system by showing it a harmless piece or copy of a pathogen. The body
    produces antibodies and memory cells, so that when it meets the real pathogen later it can
    respond quickly. Herd immunity arises when enough people are immune that the disease cannot
    spread easily, which protects those who cannot be vaccinated."""),
    _p("""A shop sells notebooks for three dollars each or four for ten dollars. Buying eleven notebooks
    as two packs of four and three singles costs twenty plus nine, twenty-nine dollars, which is
    four dollars less than buying all eleven one at a time."""),
    _p("""The printing press, developed by Johannes Gutenberg around 1440, made books far cheaper to
    produce. Ideas travelled faster, literacy spread, and scholars across Europe could compare the
    same texts. Historians link the press to the Reformation and to the scientific revolution that
    followed."""),
    """User: My code says KeyError when I read a dictionary. Why?
Assistant: A KeyError means you asked for a key that is not in the dictionary. Print the keys to
check the spelling and type, for example the string '1' is not the integer 1. If a missing key
is normal, use dict.get(key, default) or check with 'if key in data' first.""",
    _p("""Every prime number greater than three is one more or one less than a multiple of six. Any
    whole number can be written as 6k, 6k+1, 6k+2, 6k+3, 6k+4 or 6k+5; the forms 6k, 6k+2 and 6k+4
    are even and 6k+3 is divisible by three, so a prime above three must have the form 6k+1 or
    6k+5."""),
    _p("""Autumn came early that year. The maples along the river turned red in August, and the
    fishermen said the salmon were running late. In the evenings the whole valley smelled of wood
    smoke and apples, and the children walked home from school through drifts of leaves that
    crackled like paper."""),
    _p("""Plate tectonics explains why earthquakes and volcanoes cluster along certain lines. The
    Earth's outer shell is broken into plates that move a few centimetres a year. Where plates
    collide, one may slide beneath the other, melting into magma; where they grind past each other,
    stress builds until it is released as an earthquake."""),
    """import json

def load_settings(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {}""",
    _p("""Suppose three friends split a restaurant bill of 84 dollars and want to leave a fifteen
    percent tip. The tip is 12.60 dollars, making the total 96.60 dollars, so each friend pays
    32.20 dollars."""),
    """User: How do I politely decline a meeting invitation?
Assistant: Thank the person, say briefly that you cannot attend, and offer an alternative if you
can, such as reading the notes or meeting another day. For example: Thanks for the invite. I have
a conflict at that time, but I would be glad to review the notes afterwards.""",
    _p("""When you heat a metal rod at one end, the other end warms up over time because energetic atoms
    pass their vibrations to their neighbours. Metals conduct heat well because their free electrons
    carry energy quickly through the lattice, which is also why good conductors of electricity tend
    to be good conductors of heat."""),
    _p("""The detective studied the muddy footprints on the kitchen floor. They led from the back door to
    the pantry and stopped. There were no prints leading out again. Either the visitor was still in
    the pantry, she thought, or he had left in a way that did not involve his feet."""),
)

HELD_OUT: tuple[str, ...] = (
    _p("""The human heart beats about one hundred thousand times a day. Its right side pumps blood to the
    lungs, where it picks up oxygen and releases carbon dioxide, and its left side pumps the
    oxygen-rich blood to the rest of the body. Valves between the chambers keep the blood flowing in
    one direction, and the familiar sound of a heartbeat is the noise of those valves closing."""),
    """def is_palindrome(text):
    cleaned = [c.lower() for c in text if c.isalnum()]
    return cleaned == cleaned[::-1]

assert is_palindrome("A man, a plan, a canal: Panama")
assert not is_palindrome("hello")""",
    _p("""A rectangle is twice as long as it is wide and its perimeter is 36 centimetres. If the width is
    w, the length is 2w and the perimeter is 2w + 2(2w) = 6w, so w is 6 centimetres, the length is
    12 centimetres and the area is 72 square centimetres."""),
    """User: Is it better to study in one long session or several short ones?
Assistant: Several short sessions usually work better. Spacing practice over days helps memory,
because each time you return to the material you have to recall it, and that effort strengthens
it. Mixing topics within a session also helps you learn to tell problems apart.""",
    _p("""The market opened before dawn. Lanterns swung from the stalls, and the air was thick with the
    smell of bread, oranges and diesel. A woman selling spices called out prices in three languages,
    and a boy with a cart of melons wove through the crowd, whistling a song nobody else seemed to
    know."""),
    _p("""All squares are rectangles, but not all rectangles are squares. A square has four equal sides
    and four right angles; a rectangle needs only the four right angles. So knowing that a shape is
    a square tells you it is a rectangle, while knowing it is a rectangle leaves open whether its
    sides are equal."""),
    _p("""Sound travels as a pressure wave through air, water or solids. It moves at about 343 metres per
    second in air at room temperature, more than four times faster in water, and faster still in
    steel. Light is so much faster that during a storm you see the lightning before you hear the
    thunder, and the delay tells you how far away it struck."""),
    """git checkout -b fix-login
# edit the files, then
git add src/login.py tests/test_login.py
git commit -m "Fix login redirect after password reset"
git push origin fix-login""",
    _p("""The Silk Road was not one road but a web of trade routes linking China with Central Asia, the
    Middle East and the Mediterranean. Merchants carried silk, spices, paper and glass, but the
    routes also carried religions, languages, technologies and, at times, diseases, shaping the
    cultures they connected for more than a thousand years."""),
    _p("""If a recipe for twelve cookies needs 150 grams of flour, then one cookie needs 12.5 grams, and
    a batch of thirty cookies needs 375 grams. Scaling a recipe this way works for most ingredients,
    although baking times and leavening do not always scale in a straight line."""),
    """User: Why does my phone battery drain faster in the cold?
Assistant: Lithium-ion batteries rely on chemical reactions that slow down at low temperatures, so
the battery cannot deliver current as easily and the phone reads a lower charge. The capacity is
usually not lost; once the phone warms up, much of the charge comes back.""",
    _p("""Bees communicate the location of flowers with a waggle dance. A forager returning to the hive
    runs a figure-of-eight pattern on the comb; the angle of the straight run relative to vertical
    matches the angle between the sun and the food source, and the length of the run tells the
    other bees how far they need to fly."""),
    """def merge_sorted(left, right):
    result, i, j = [], 0, 0
    while i < len(left) and j < len(right):
        if left[i] <= right[j]:
            result.append(left[i])
            i += 1
        else:
            result.append(right[j])
            j += 1
    return result + left[i:] + right[j:]""",
    _p("""A bag holds four red marbles and six blue ones. The chance of drawing a red marble is four in
    ten, or 0.4. If one marble is drawn and not replaced, the chance that the second is also red is
    three in nine, so the chance of drawing two reds in a row is 0.4 times one third, about 0.133."""),
    """User: What should I pack for a two-day hike?
Assistant: Bring water and a way to treat more, food that does not need cooking, a warm layer and a
rain jacket, a map, a headlamp, a small first-aid kit, sun protection and a light shelter or
sleeping bag if you will stay overnight. Tell someone your route and when you expect to return.""",
    _p("""The first transatlantic telegraph cable was completed in 1858, and for a few weeks messages
    crossed the ocean in minutes instead of the ten days a ship needed. Then the cable failed.
    Engineers learned from the failure, and a far more durable cable laid in 1866 connected Europe
    and North America for good."""),
    _p("""If it rains, the match is cancelled. The match was not cancelled. From these two statements
    we can conclude that it did not rain, because rain would have forced a cancellation. We cannot
    conclude the reverse: a cancelled match would not prove that it rained, since matches are
    cancelled for other reasons too."""),
    _p("""Glaciers move. Under its own enormous weight, the ice deforms and slides over the rock beneath
    it, sometimes only a few centimetres a day, sometimes several metres. As it moves it scrapes and
    plucks the ground, carving the U-shaped valleys and sharp ridges that remain long after the ice
    has melted."""),
    _p("""The robot had been built to sort apples, and for nine years it had sorted apples without
    complaint. On the first morning of its tenth year it picked up a small green apple, turned it
    over twice, and placed it very gently on the windowsill, where the light was better. Nobody
    could explain why, and the robot, when asked, only said that it seemed right."""),
    _p("""She kept the key in a tin that once held peppermints, under a loose board beneath her bed. She
    did not know what it opened. Her grandfather had pressed it into her hand the summer before he
    died and said only: when the river freezes, you will know. The river had never frozen in her
    lifetime, but this winter the ice was creeping out from both banks."""),
)

