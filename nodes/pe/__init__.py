"""The RSerPool pool element: registers a service with registrars and serves pool users."""
