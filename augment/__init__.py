"""The augmentation library of Tang et al. (2019): tagging, POS tables, the three rules and the recipe.

Pure Python + numpy + spaCy; no torch. Masked words are written as the neutral `MASK_SYMBOL`, which each model
renders to its own mask token (BERT's `[MASK]`, RoBERTa's `<mask>`, the student's mask row).
"""

MASK_SYMBOL = "⟨mask⟩"
