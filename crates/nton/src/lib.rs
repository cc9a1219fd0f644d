//! The nton CLI library.
