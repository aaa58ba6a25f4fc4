"""Optional integrations (Django, Redis), imported only when used; the core never imports them."""
