output "file_systems" {
  description = "Per AZ: the database cache and scratch file systems (id, dns_name, mount_name)."
  value = {
    for az in keys(var.subnets) : az => {
      for role in keys(local.roles) : role => {
        id         = aws_fsx_lustre_file_system.this["${az}/${role}"].id
        dns_name   = aws_fsx_lustre_file_system.this["${az}/${role}"].dns_name
        mount_name = aws_fsx_lustre_file_system.this["${az}/${role}"].mount_name
      }
    }
  }
}

output "file_system_arns" {
  description = "ARNs of every file system, keyed <az>/<role>."
  value       = { for k, fs in aws_fsx_lustre_file_system.this : k => fs.arn }
}
