//! Translation between Portarium's dispatch contract and st2 executions.

pub mod validate;
