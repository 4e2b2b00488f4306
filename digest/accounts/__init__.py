"""Console accounts: editors and operators, their passwords and browser sessions.

``models`` holds the tables, ``passwords`` the hashing (argon2id through argon2-cffi),
``service`` what ``digest users …`` and the console's login do with them.
"""
