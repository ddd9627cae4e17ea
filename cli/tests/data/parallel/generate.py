#!/usr/bin/env python3
"""Regenerates the synthetic parallel corpus in this folder (see README.md).

Every line i of every file is the same sentence, built from the same (name, verb, number, noun,
place) choice, in English, French, German, Spanish, Greek and Russian. The choices come from a
fixed 64-bit LCG, so the output is the same on every run: `python3 generate.py` rewrites the
six .txt files byte for byte.
"""

LINES = 300

NAMES = [
    ("Anna", "Anna", "Anna", "Anna", "Άννα", "Анна"),
    ("Maria", "Marie", "Maria", "María", "Μαρία", "Мария"),
    ("Peter", "Pierre", "Peter", "Pedro", "Πέτρος", "Пётр"),
    ("John", "Jean", "Johann", "Juan", "Γιάννης", "Иван"),
    ("Helen", "Hélène", "Helene", "Elena", "Ελένη", "Елена"),
    ("Nicholas", "Nicolas", "Nikolaus", "Nicolás", "Νίκος", "Николай"),
]
VERBS = [
    ("sees", "voit", "sieht", "ve", "βλέπει", "видит"),
    ("finds", "trouve", "findet", "encuentra", "βρίσκει", "находит"),
]
# Five to twelve only: every language then takes the plain plural (Russian: genitive plural).
NUMBERS = [
    ("five", "cinq", "fünf", "cinco", "πέντε", "пять"),
    ("six", "six", "sechs", "seis", "έξι", "шесть"),
    ("seven", "sept", "sieben", "siete", "επτά", "семь"),
    ("eight", "huit", "acht", "ocho", "οκτώ", "восемь"),
    ("nine", "neuf", "neun", "nueve", "εννέα", "девять"),
    ("ten", "dix", "zehn", "diez", "δέκα", "десять"),
    ("eleven", "onze", "elf", "once", "έντεκα", "одиннадцать"),
    ("twelve", "douze", "zwölf", "doce", "δώδεκα", "двенадцать"),
]
NOUNS = [
    ("cats", "chats", "Katzen", "gatos", "γάτες", "кошек"),
    ("dogs", "chiens", "Hunde", "perros", "σκύλους", "собак"),
    ("birds", "oiseaux", "Vögel", "pájaros", "πουλιά", "птиц"),
    ("books", "livres", "Bücher", "libros", "βιβλία", "книг"),
    ("trees", "arbres", "Bäume", "árboles", "δέντρα", "деревьев"),
    ("houses", "maisons", "Häuser", "casas", "σπίτια", "домов"),
    ("apples", "pommes", "Äpfel", "manzanas", "μήλα", "яблок"),
    ("children", "enfants", "Kinder", "niños", "παιδιά", "детей"),
]
PLACES = [
    ("in the garden", "dans le jardin", "in dem Garten", "en el jardín", "στον κήπο", "в саду"),
    ("in the park", "dans le parc", "in dem Park", "en el parque", "στο πάρκο", "в парке"),
    ("in the city", "dans la ville", "in der Stadt", "en la ciudad", "στην πόλη", "в городе"),
    ("in the forest", "dans la forêt", "in dem Wald", "en el bosque", "στο δάσος", "в лесу"),
    ("at the school", "à l'école", "in der Schule", "en la escuela", "στο σχολείο", "в школе"),
    ("in the village", "dans le village", "in dem Dorf", "en el pueblo", "στο χωριό", "в деревне"),
]
LANGS = ["eng", "fra", "deu", "spa", "ell", "rus"]


def main():
    state = 0x5EED
    rows = []
    for _ in range(LINES):
        pick = []
        for table in (NAMES, VERBS, NUMBERS, NOUNS, PLACES):
            state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
            pick.append(table[(state >> 33) % len(table)])
        rows.append(pick)
    for li, lang in enumerate(LANGS):
        with open(f"{lang}.txt", "w", encoding="utf-8", newline="\n") as f:
            for name, verb, num, noun, place in rows:
                f.write(f"{name[li]} {verb[li]} {num[li]} {noun[li]} {place[li]}.\n")


if __name__ == "__main__":
    main()
