"""Console accounts: editors and operators, their passwords and browser sessions.

``passwords`` holds the hashing (argon2id through argon2-cffi), ``service`` what
``digest users …`` and the console's login do with them; the tables are in
``digest/store/account_models.py``.
"""
