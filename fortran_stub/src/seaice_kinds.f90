module seaice_kinds
  implicit none
  integer, parameter, public :: dp = selected_real_kind(15, 307)
end module seaice_kinds
