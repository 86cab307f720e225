"""Criterion kinds, one module each: schema, evaluation, reads and Group characteristic (see ``registry``)."""
