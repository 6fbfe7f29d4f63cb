"""What tests and offline runs use in place of a hub model: a tiny model built here
(:mod:`.tiny`) and a scripted fake backend (:mod:`.fake`)."""
