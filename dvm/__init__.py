"""confidential-dvm: a Nostr Data Vending Machine for confidential AI jobs.

Subpackages: ``dvm.nostr`` (pure protocol core), ``dvm.relay`` (asyncio relay pool),
``dvm.node`` (provider daemon), ``dvm.client`` (requester SDK), ``dvm.cli`` (the ``cdvm`` command).
"""
