"""The Python entry points over your own model and data: `find_tickets` and what it returns."""

from ticketlab.api.find_tickets import find_tickets
from ticketlab.api.tickets import Tickets

__all__ = ["Tickets", "find_tickets"]
