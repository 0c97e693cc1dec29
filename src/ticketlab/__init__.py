"""ticketlab."""
