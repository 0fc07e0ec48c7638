"""`longchat bench ...`: placeholder module, filled in below."""
