"""pytest plugin of the fakes (fixture `fake_agent`)."""
