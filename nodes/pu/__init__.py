"""The RSerPool pool user: resolves pool handles and fails over between pool elements."""
