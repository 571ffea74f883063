"""Model weights: layout (:mod:`.layout`), tiny random demo weights (:mod:`.demo`) and
the real downloads (:mod:`.fetch`)."""
