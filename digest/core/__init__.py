"""The ground floor: settings (with every parser a setting needs), the clock, safe text
(mail headers, JSON, wording), signed tokens, resource folders and the Recipient value.

Imports nothing else of the project but :mod:`digest.exceptions`.
"""
