"""The RSerPool registrar (ENRP server): protocol core and asyncio layer."""
