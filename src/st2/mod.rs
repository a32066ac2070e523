//! The st2 wire client: typed models, authentication, transport and API areas.
