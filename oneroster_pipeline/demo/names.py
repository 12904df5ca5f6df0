"""Name tables for the synthetic district: diverse, with non-ASCII letters and apostrophes on purpose."""

# Each table is a tuple so a record can pick an entry by index; `ascii_slug` turns a name into the ASCII fragment used
# in usernames and e-mail addresses (Zoë -> zoe, O'Brien -> obrien, Nguyễn -> nguyen).

from __future__ import annotations

import unicodedata

GIVEN_NAMES = (
    "Aaliyah", "Aarav", "Abigail", "Ahmed", "Aiko", "Alejandro", "Amara", "Åsa", "Benjamin", "Björn", "Camila",
    "Chloé", "Chinedu", "D'Angelo", "Daniel", "Dmitri", "Elif", "Emma", "Ethan", "Fatima", "François", "Grace",
    "Hana", "Hiroshi", "Ingrid", "Isabella", "Jamal", "José", "Kai", "Léa", "Liam", "Lucía", "Maya", "Mei",
    "Mohammed", "Noah", "Olivia", "Oscar", "Priya", "Rafael", "Renée", "Santiago", "Siobhán", "Sofia", "Søren",
    "Thanh", "Tomás", "Valentina", "William", "Yusuf", "Zoë", "Zainab",
)

FAMILY_NAMES = (
    "Adeyemi", "Andersson", "Brown", "Chen", "D'Angelo", "Díaz", "Dubois", "Eriksen", "Fernández", "García",
    "Goldberg", "Hernández", "Ivanova", "Jackson", "Johnson", "Kim", "Kowalski", "Lee", "López", "Martin",
    "Müller", "Nakamura", "Nguyễn", "Novák", "O'Brien", "O'Connor", "Okafor", "Patel", "Pérez", "Rossi",
    "Santos", "Schmidt", "Singh", "Smith", "Søndergaard", "Taylor", "Trần", "Walker", "Williams", "Yılmaz",
    "Zhang", "Ødegaard",
)

MIDDLE_NAMES = ("", "", "", "Ann", "James", "Marie", "Lee", "José", "Grace", "Elijah", "Rose", "Amadou", "Ngọc")

PREFERRED_NAMES = ("Alex", "Sam", "Jo", "Charlie", "Kit", "Bea", "Teddy", "Nico")

SCHOOL_STEMS = (
    "Lincoln", "Riverside", "Oak Grove", "Jefferson", "Maple Ridge", "Sunnyvale", "Cedar Park", "Roosevelt",
    "Hillcrest", "Lakeview", "Pioneer", "Washington", "Eastside", "Willow Creek", "Franklin", "Sequoia",
    "Brookside", "Highland", "Valley View", "Madison", "Kennedy", "Mountain View", "Parkside", "Westwood",
)

TOWNS = ("Springfield", "Fairview", "Greenville", "Bristol", "Clinton", "Georgetown", "Salem", "Ashland")


_NO_DECOMPOSITION = str.maketrans({"Ø": "O", "ø": "o", "Đ": "D", "đ": "d", "ı": "i", "ß": "ss"})


def ascii_slug(name: str) -> str:
    """Lower-case ASCII letters and digits only: accents folded, apostrophes and spaces dropped."""
    folded = unicodedata.normalize("NFKD", name.translate(_NO_DECOMPOSITION))
    return "".join(c for c in folded if c.isascii() and c.isalnum()).lower()
