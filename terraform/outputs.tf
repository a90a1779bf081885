# Outputs. None of them carries a credential: the database password stays in
# Secrets Manager and only its ARN is shown.

output "service_url" {
  description = "Public base URL of the service (SHORTENER_PUBLIC_URL)."
  value       = local.public_url
}

output "alb_dns_name" {
  description = "DNS name of the load balancer; point the service's domain at it (CNAME or Route 53 alias)."
  value       = aws_lb.main.dns_name
}

output "alb_zone_id" {
  description = "Hosted zone ID of the load balancer, for a Route 53 alias record."
  value       = aws_lb.main.zone_id
}

output "database_endpoint" {
  description = "Database host and port (host:5432), reachable only from the instances."
  value       = aws_db_instance.main.endpoint
}

output "database_address" {
  description = "Database host name."
  value       = aws_db_instance.main.address
}

output "database_secret_arn" {
  description = "ARN of the Secrets Manager secret holding the database master user name and password."
  value       = local.db_secret_arn
}

output "asg_name" {
  description = "Name of the Auto Scaling group (for `aws autoscaling start-instance-refresh` and to find instances for SSM sessions)."
  value       = aws_autoscaling_group.app.name
}

output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.main.id
}

output "app_security_group_id" {
  description = "Security group of the instances (the only source the database admits)."
  value       = aws_security_group.app.id
}

output "kms_key_arn" {
  description = "Customer-managed KMS key protecting the database, its secret and the log groups."
  value       = aws_kms_key.main.arn
}
