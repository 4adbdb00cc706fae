"""Canary texts: one raw value per entity type, embedded in ordinary prose (valid test values)."""

from __future__ import annotations

# entity type -> (raw value, text that holds it)
CANARIES: dict[str, tuple[str, str]] = {
    "EMAIL_ADDRESS": ("canary.user+tag@example.org",
                      "Please forward the report to canary.user+tag@example.org before Friday, thanks."),
    "PHONE_NUMBER": ("(212) 555-0147",
                     "You can reach me at (212) 555-0147 during office hours or leave a message."),
    "CREDIT_CARD": ("5500 0000 0000 0004",
                    "The card on file is 5500 0000 0000 0004 and it expires next spring."),
    "US_SSN": ("536-22-8726", "My social security number is 536-22-8726, please keep it private."),
    "IBAN_CODE": ("DE89 3704 0044 0532 0130 00",
                  "Wire the refund to DE89 3704 0044 0532 0130 00 at your earliest convenience."),
    "IP_ADDRESS": ("192.168.14.27", "The failing host is 192.168.14.27 according to the access logs."),
}

MIXED = ("Hi, I am writing about order 1182. Mail canary.user+tag@example.org or call (212) 555-0147. "
         "Card 5500 0000 0000 0004, SSN 536-22-8726, IBAN DE89 3704 0044 0532 0130 00, host 192.168.14.27.")

PERSON_TEXTS: list[tuple[str, str]] = [
    ("Margaret Thompson", "Yesterday Margaret Thompson signed the lease for the new office downtown."),
    ("David Rodriguez", "Please ask David Rodriguez to review the contract before we send it."),
    ("Olivia Chen", "The package was delivered to Olivia Chen at the front desk this morning."),
]
