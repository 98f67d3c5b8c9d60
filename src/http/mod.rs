pub mod form;
pub mod params;
