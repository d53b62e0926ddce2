"""castflow supervision: who lives, who restarts, who is cancelled."""
